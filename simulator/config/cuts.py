"""Where each client's model is placed and cut: by the strategy, by the scenario's cut, or by a cut policy.

A client's placement (config.registry.Placement) and how its cut is set (config.registry.CutRule) come from its
strategy's registry entry. Only a split client has a cut (1..8); the others keep a cut value for the files they
appear in, `FILE_CUT`: 0 where the model is wholly at the server, 9 where it is wholly on the device.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

from simulator.config.condition_traces import time_averaged
from simulator.config.cut_policy import choose_cut, deepest_common_cut
from simulator.config.fleet import ClientSpec
from simulator.config.registry import Placement, facts
from simulator.config.schema import ClientGroupCfg, Scenario
from simulator.costs.cost_table import CostTable
from simulator.errors import InputError
from simulator.units import format_bytes

__all__ = ["FILE_CUT", "check_cut_keys", "resolve_cuts", "check_cut_memory", "group_index", "cut_label"]

# The cut written to clients.csv and summary.json for a client whose model is not split.
FILE_CUT: dict[Placement, int] = {"server": 0, "device": 9}


def cut_label(placement: Placement, cut: int) -> str:
    """A client's cut as printed: the number, '-' (nothing on the device) or 'all' (the whole model on it)."""
    return {"server": "-", "device": "all"}.get(placement, str(cut))


def group_index(sc: Scenario, client_index: int) -> int:
    """The index of the fleet entry (clients[g]) a client was expanded from."""
    seen = 0
    for g, group in enumerate(sc.clients):
        if client_index < seen + group.count:
            return g
        seen += group.count
    raise IndexError(client_index)


def check_cut_keys(sc: Scenario, file: str) -> None:
    """With a fixed policy the scenario gives the cut; with any other the policy does; never both."""
    if facts(sc.strategy.name).decides_cut:
        return  # the strategy decides the cut (or there is none)
    for g, group in enumerate(sc.clients):
        policy = (group.cut_policy or sc.cut_policy).name
        if policy == "fixed" and group.cut is None:
            raise InputError(
                "missing: give a cut (1..8), or a cut_policy that chooses one", file=file, key=f"clients[{g}].cut"
            )
        if policy != "fixed" and group.cut is not None:
            raise InputError(
                f"cut {group.cut} is given but cut_policy {policy} chooses the cut; remove one of them",
                file=file,
                key=f"clients[{g}].cut",
            )


def _steps_estimate(sc: Scenario, group: ClientGroupCfg) -> int:
    """Batches a client of `group` runs per round; with local_epochs, from its expected share of the data."""
    t = sc.training
    if t.local_steps is not None:
        return t.local_steps
    total_w = sum(g.data_weight * g.count for g in sc.clients)
    samples = sc.dataset.train_size() * group.data_weight / total_w
    return max(1, math.ceil(t.local_epochs * samples / min(t.batch_size, max(1, int(samples)))))


def resolve_cuts(sc: Scenario, file: str, clients: Sequence[ClientSpec], table: CostTable) -> tuple[ClientSpec, ...]:
    """Each client's placement and cut as its strategy (or its cut policy) decides, with the reason."""
    batch, opt = sc.training.batch_size, sc.training.optimizer.memory_kind()
    name = sc.strategy.name
    entry = facts(name)
    if entry.placement == "server":
        cut = sc.strategy.common_cut
        if entry.cut == "trained" and cut is None:
            raise InputError(
                f"missing: {name} trains u1..u_cut at the server: give the cut (1..8)",
                file=file,
                key="strategy.common_cut",
            )
        reason = f"{name}: {entry.placement_note.format(cut=cut)}"
        return tuple(
            replace(c, cut=FILE_CUT["server"], placement="server", cut_policy="strategy", cut_reason=reason)
            for c in clients
        )
    if entry.placement == "device":
        need = table.full_train_memory_bytes(batch, opt)
        out = []
        for c in clients:
            fits = need <= c.device.memory_bytes
            why = (
                ""
                if fits
                else (
                    f"the whole model needs {format_bytes(round(need))} to train, device "
                    f"'{c.device.name}' has {format_bytes(c.device.memory_bytes)}"
                )
            )
            out.append(
                replace(
                    c,
                    cut=FILE_CUT["device"],
                    placement="device",
                    cut_policy="strategy",
                    takes_part=fits,
                    why_not=why,
                    cut_reason=f"{name}: {entry.placement_note}" if fits else f"cannot take part: {why}",
                )
            )
        return tuple(out)
    if entry.common_cut:
        if sc.strategy.common_cut is not None:
            cut, reason = sc.strategy.common_cut, f"{name}: strategy.common_cut"
        else:
            try:
                cut, weakest = deepest_common_cut(table, [c.device for c in clients], batch=batch, optimizer=opt)
            except ValueError as err:
                raise InputError(str(err), file=file, key="strategy.common_cut") from None
            reason = (
                f"{name}: deepest cut every client can train (limited by {weakest.name})"
                if cut < table.num_cuts
                else f"{name}: every client can train the deepest cut"
            )
        return tuple(replace(c, cut=cut, cut_policy="strategy", cut_reason=reason) for c in clients)
    out = []
    for c in clients:
        g = group_index(sc, c.index)
        group = sc.clients[g]
        policy = group.cut_policy or sc.cut_policy
        if policy.name == "fixed":
            out.append(c)
            continue
        key = f"clients[{g}].cut_policy" if group.cut_policy else "cut_policy"
        try:
            # Rates that change over time are estimated by their time-averages (config.condition_traces).
            choice = choose_cut(
                policy.name,
                table,
                time_averaged(c.device, "device", file=file, key=key),
                time_averaged(c.link, "link", file=file, key=key),
                batch=batch,
                steps=_steps_estimate(sc, group),
                optimizer=opt,
                activation_dtype=sc.network.activation_dtype,
                deadline_s=policy.deadline_s,
                energy_j=policy.energy_j,
            )
        except ValueError as err:
            raise InputError(f"client '{c.name}': {err}", file=file, key=key) from None
        out.append(replace(c, cut=choice.cut, cut_policy=choice.policy, cut_reason=choice.reason))
    return tuple(out)


def check_cut_memory(sc: Scenario, clients: Sequence[ClientSpec], file: str, table: CostTable) -> None:
    """Every split client's cut fits its device's memory at the batch size (the others were checked when their
    placement was resolved); the error names the deepest cut that would fit."""
    opt = sc.training.optimizer.memory_kind()
    batch = sc.training.batch_size
    for c in clients:
        if c.placement != "split":
            continue
        need = table.train_memory_bytes(c.cut, batch, opt)
        has = c.device.memory_bytes
        if need > has:
            fits = [k for k in range(1, table.num_cuts + 1) if table.train_memory_bytes(k, batch, opt) <= has]
            hint = (
                f"the deepest cut that fits is {max(fits)}"
                if fits
                else "no cut fits; lower training.batch_size or model.width"
            )
            raise InputError(
                f"cut {c.cut} needs {format_bytes(round(need))} of memory to train "
                f"(ResNet-18 width {sc.model.width}, batch {batch}, optimizer {opt}) "
                f"but device '{c.device.name}' has {format_bytes(has)}; {hint}",
                file=file,
                key=f"clients[{group_index(sc, c.index)}].cut",
            )
