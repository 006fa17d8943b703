"""What a run prints: its cuts before it starts and its summary after, in lines that stay few for any fleet."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from simulator.config.cuts import cut_label

if TYPE_CHECKING:
    from simulator.config.scenario import ResolvedScenario

__all__ = ["MAX_ROWS", "format_cuts", "format_summary", "format_seconds"]

MAX_ROWS = 20  # past this many clients the console groups them by device, link and cut


@dataclass(frozen=True)
class _Group:
    device: str
    link: str
    cut: object

    def label(self) -> str:
        return f"{self.device}/{self.link} cut {self.cut}"


def format_seconds(seconds: float) -> str:
    """Host time with the digits that matter: '58.4 s', '0.0412 s' (a replay is quick), never '0.0 s'."""
    return f"{seconds:,.1f} s" if seconds >= 10 else f"{seconds:.3g} s"


def format_cuts(rs: ResolvedScenario, verbose: bool = False) -> str:
    """Each client's cut and why; past MAX_ROWS clients (unless verbose) one line per distinct choice, counted."""
    if verbose or len(rs.clients) <= MAX_ROWS:
        return rs.describe_cuts()
    choices: Counter[tuple[str, str, str, str, str]] = Counter(
        (c.device.name, c.link.name, cut_label(c.placement, c.cut), c.cut_policy, c.cut_reason) for c in rs.clients
    )
    lines = [f"cuts ({len(rs.clients):,} clients, {len(choices)} distinct choices; --verbose lists every client):"]
    for (device, link, cut, policy, reason), n in list(choices.most_common())[:MAX_ROWS]:
        lines.append(f"  {n:>7,}× {device}/{link}  cut {cut:>3}  ({policy}: {reason})")
    if len(choices) > MAX_ROWS:
        lines.append(f"  ... {len(choices) - MAX_ROWS} more choices (summary.json: clients)")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    """An accuracy, or '-' where there is none (no exit, not evaluated)."""
    return "-" if value is None or value != value else f"{value:.4f}"


def _spread(values: Sequence[float | None], fmt: str) -> str:
    """'min/mean/max' of the finite values, or one value when they are all equal, or '-' when there is none."""
    finite = [float(v) for v in values if isinstance(v, (int, float)) and v == v]
    if not finite:
        return "-"
    lo, hi, mean = min(finite), max(finite), sum(finite) / len(finite)
    return (
        format(mean, fmt)
        if hi - lo <= 1e-12 * max(1.0, abs(hi))
        else f"{format(lo, fmt)}/{format(mean, fmt)}/{format(hi, fmt)}"
    )


def _headline(summary: dict[str, Any], replay: bool) -> list[str]:
    host = format_seconds(summary["host_seconds"])
    note = (
        "   (re-timing only: accuracies are the original run's)"
        if replay
        else "   (timing only: no training, no accuracy)"
        if summary.get("timing_only")
        else ""
    )
    return [
        f"run '{summary['scenario']}' ({summary['strategy']}, seed {summary['seed']}): {summary['rounds']} rounds, "
        f"{len(summary['clients']):,} clients",
        f"  final accuracy (server path, mean over clients): {_num(summary['final_accuracy'])}",
        f"  exit accuracy (mean over clients):               {_num(summary['mean_exit_accuracy'])}",
        f"  local accuracy (test split reweighted to each client's own labels, mean): final "
        f"{_num(summary.get('mean_final_accuracy_local'))}, exit {_num(summary.get('mean_exit_accuracy_local'))}",
        f"  simulated time: {summary['sim_time_s']:,.2f} s   energy: {summary['energy_j']['total']:,.1f} J   "
        f"traffic: {summary['bytes_up'] / 1e6:,.2f} MB up, {summary['bytes_down'] / 1e6:,.2f} MB down",
        f"  host time: {host}{note}",
    ]


def _client_rows(summary: dict[str, Any]) -> list[str]:
    energy = summary["energy_j"]["per_entity"]
    lines = [f"  {'client':<26}{'device':<22}{'cut':>4}{'exit acc':>10}{'final acc':>11}{'energy J':>12}"]
    for c in summary["clients"]:
        name = c["name"]
        lines.append(
            f"  {name:<26}{c['device']:<22}{c['cut']:>4}{_num(summary['exit_accuracy'].get(name)):>10}"
            f"{_num(summary['final_accuracy_per_client'].get(name)):>11}{energy.get(name, 0.0):>12,.1f}"
        )
    return lines


def _group_rows(summary: dict[str, Any]) -> list[str]:
    energy = summary["energy_j"]["per_entity"]
    groups: dict[_Group, list[str]] = {}
    for c in summary["clients"]:
        groups.setdefault(_Group(c["device"], c.get("link", "?"), c["cut"]), []).append(c["name"])
    ranked = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    lines = [
        f"  {len(summary['clients']):,} clients in {len(groups)} groups by device/link/cut "
        "(min/mean/max over a group's clients; one value where they all agree):",
        f"  {'group':<34}{'clients':>8}  {'exit acc':<22}{'final acc':<22}{'energy J'}",
    ]
    for group, names in ranked[:MAX_ROWS]:
        lines.append(
            (
                f"  {group.label():<34}{len(names):>8,}  "
                f"{_spread([summary['exit_accuracy'].get(n) for n in names], '.4f'):<22}"
                f"{_spread([summary['final_accuracy_per_client'].get(n) for n in names], '.4f'):<22}"
                f"{_spread([energy.get(n, 0.0) for n in names], ',.1f')}"
            ).rstrip()
        )
    if len(groups) > MAX_ROWS:
        rest = sum(len(names) for _, names in ranked[MAX_ROWS:])
        lines.append(f"  ... {len(groups) - MAX_ROWS} more groups ({rest:,} clients)")
    return lines


def _notes(summary: dict[str, Any], verbose: bool) -> list[str]:
    """Clients that could not take part and rounds clients missed: per client, or counted past MAX_ROWS."""
    lines = []
    cannot = summary.get("cannot_take_part", {})
    if verbose or len(cannot) <= MAX_ROWS:
        lines += [f"  {name} could not take part: {why}" for name, why in cannot.items()]
    else:
        for why, n in Counter(cannot.values()).most_common(MAX_ROWS):
            lines.append(f"  {n:,} clients could not take part: {why}")
    missed = {}
    for name, fleet in summary.get("availability", {}).items():
        counts = {k: v for k, v in fleet["rounds_by_status"].items() if k not in ("ok", "cannot_take_part") and v}
        if counts:
            missed[name] = counts
    if verbose or len(missed) <= MAX_ROWS:
        for name, counts in missed.items():
            lines.append(f"  {name}: rounds {', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}")
    else:
        total: Counter[str] = Counter()
        for counts in missed.values():
            total.update(counts)
        lines.append(
            f"  {len(missed):,} clients missed rounds: "
            + ", ".join(f"{v:,} {k}" for k, v in sorted(total.items()))
            + " (client-rounds)"
        )
    return lines


def format_summary(summary: dict[str, Any], out: Path, *, verbose: bool = False, quiet: bool = False) -> str:
    """The closing summary. Up to MAX_ROWS clients (or with `verbose`) one row per client; past that one row per
    device/link/cut group; `quiet`: the headline figures only. Always says where the full tables are."""
    replay = bool(summary.get("replay"))
    lines = _headline(summary, replay)
    grouped = not verbose and len(summary["clients"]) > MAX_ROWS
    if not quiet:
        lines += ["", *(_group_rows(summary) if grouped else _client_rows(summary))]
        server_j = summary["energy_j"]["server"]
        lines.append(
            f"  {'server':<34}{'':>8}  {'':<44}{server_j:,.1f}"
            if grouped
            else f"  {'server':<26}{'':<22}{'':>4}{'':>10}{'':>11}{server_j:>12,.1f}"
        )
        lines += _notes(summary, verbose)
    if summary.get("stopped_early"):
        lines.append(f"  stopped early: {summary['stopped_early']}")
    where = "  (every client: summary.json, clients.csv; --verbose prints them)" if grouped or quiet else ""
    lines.append(f"\nresults in {out}/{where}")
    return "\n".join(lines)
