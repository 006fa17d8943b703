"""How far simulated time is from emulated time: per round and per client, read from two run folders."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from simulator.output.results import atomic_write

__all__ = [
    "FIDELITY_COLUMNS",
    "round_durations",
    "client_finish",
    "fidelity_rows",
    "fidelity_markdown",
    "write_fidelity",
]

FIDELITY_COLUMNS = ("round", "entity", "what", "emulated_s", "simulated_s", "error")
_TRAINING_KINDS = frozenset({"compute", "tx"})  # a client's training work; the server's steps are its compute


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def round_durations(run: Path) -> dict[int, tuple[float, float]]:
    """Per round: (start, duration) in seconds, from rounds.csv (sim_time_s is when each round ended)."""
    out, start = {}, 0.0
    for row in _read(run / "rounds.csv"):
        end = float(row["sim_time_s"])
        out[int(row["round"])] = (start, end - start)
        start = end
    return out


def client_finish(run: Path) -> dict[tuple[int, str], float]:
    """Per (round, entity): seconds from the round's start until a client's last training step or feature upload
    ended, or the server's last training step (its aggregation left out: the round time has it)."""
    starts = {r: s for r, (s, _d) in round_durations(run).items()}
    last: dict[tuple[int, str], float] = defaultdict(float)
    for row in _read(run / "events.csv"):
        if row["kind"] in _TRAINING_KINDS:
            key = (int(row["round"]), row["entity"])
            last[key] = max(last[key], float(row["t_end"]) - starts[key[0]])
    return dict(last)


def fidelity_rows(emulated: Path, simulated: Path) -> list[tuple[Any, ...]]:
    """Rows of FIDELITY_COLUMNS: each round's duration, then each client's finish in it; error = simulated /
    emulated − 1 (negative: the simulator is optimistic)."""
    rows: list[tuple[Any, ...]] = []
    emu_r, sim_r = round_durations(emulated), round_durations(simulated)
    emu_c, sim_c = client_finish(emulated), client_finish(simulated)
    for rnd in sorted(emu_r):
        e, s = emu_r[rnd][1], sim_r[rnd][1]
        rows.append((rnd, "all", "round_s", e, s, s / e - 1.0 if e > 0 else math.nan))
        for key in sorted(k for k in emu_c if k[0] == rnd):
            e, s = emu_c[key], sim_c.get(key, math.nan)
            what = "server_trained_s" if key[1] == "server" else "client_trained_s"
            rows.append((rnd, key[1], what, e, s, s / e - 1.0 if e > 0 else math.nan))
    return rows


def _stats(errors: Sequence[float]) -> str:
    if not errors:
        return "-"
    mean = sum(errors) / len(errors)
    return f"{mean:+.1%} (max |{max(abs(x) for x in errors):.1%}|)"


def fidelity_markdown(rows: Sequence[tuple[Any, ...]], header: str = "") -> str:
    """A Markdown table of the rows, with the mean error of the rounds and of the clients under it."""
    lines = [header, ""] if header else []
    lines += ["| round | entity | what | emulated s | simulated s | error |", "|---|---|---|---|---|---|"]
    for rnd, entity, what, e, s, err in rows:
        lines.append(f"| {rnd} | {entity} | {what} | {e:.3f} | {s:.3f} | {err:+.1%} |")
    rounds = [r[5] for r in rows if r[2] == "round_s"]
    clients = [r[5] for r in rows if r[2] == "client_trained_s"]
    server = [r[5] for r in rows if r[2] == "server_trained_s"]
    lines += [
        "",
        f"Error of the round time, mean (max): {_stats(rounds)}; of the clients' training finish: "
        f"{_stats(clients)}; of the server's: {_stats(server)}.",
        "",
    ]
    return "\n".join(lines)


def write_fidelity(out: Path, rows: Sequence[tuple[Any, ...]], header: str = "") -> None:
    """fidelity.csv and fidelity.md in `out`."""
    text = (
        ",".join(FIDELITY_COLUMNS)
        + "\n"
        + "".join(f"{r},{ent},{what},{e!r},{s!r},{err!r}\n" for r, ent, what, e, s, err in rows)
    )
    atomic_write(out / "fidelity.csv", text)
    atomic_write(out / "fidelity.md", fidelity_markdown(rows, header))
