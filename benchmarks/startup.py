"""Start-up time of the light `splitee` commands, beside `python -c pass` and `import torch` for scale.

    python benchmarks/startup.py                          # this checkout, 7 repeats
    python benchmarks/startup.py --baseline /path/to/old  # and another checkout, run in turn with this one

Each figure is the wall time of a whole fresh process (subprocess start to exit, interpreter start-up included) and
its peak resident memory (the child's own, from wait4). Commands run in turn (A B A B ...) after one untimed
warm-up each, so a machine whose speed drifts moves every column alike. The load average is printed before and
after: on a busy machine the figures are not start-up times. plot and report draw from a small timing-only run
folder made first with this checkout's code.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple, Sequence

ROOT = Path(__file__).resolve().parents[1]

RUN = """\
name: startup
seed: 0
dataset: {name: synthetic, synthetic: {train_size: 64, test_size: 32, image_size: 8}}
model: {width: 4}
training: {rounds: 2, local_steps: 1, batch_size: 16}
strategy: {name: averaging}
clients:
  - {device: rpi4, link: wifi4, cut: 1, count: 2}
output: {progress: false, checkpoint_every: 0, events: csv}
"""


class Sample(NamedTuple):
    wall_s: float
    peak_mb: float


def _time_once(argv: Sequence[str], cwd: Path) -> Sample:
    """One fresh process: wall seconds from start to reaping, and its peak RSS (ru_maxrss is KiB on Linux)."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}  # `-m simulator.cli` also finds the package through cwd
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait for it again
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(argv)} (in {cwd}) exited {proc.returncode}: {err.decode()[-500:]}")
    return Sample(wall, usage.ru_maxrss / 1024)


def _commands(python: str, run_dir: Path, out: Path) -> dict[str, list[str]]:
    cli = [python, "-m", "simulator.cli"]
    return {
        "splitee --help": [*cli, "--help"],
        "splitee validate quickstart.yaml": [*cli, "validate", "scenarios/quickstart.yaml"],
        "splitee devices": [*cli, "devices"],
        "splitee plot energy RUN": [*cli, "plot", "energy", str(run_dir), "--out", str(out / "energy.png")],
        "splitee report RUN": [*cli, "report", str(run_dir), "--out", str(out / "report.html")],
    }


def _cell(samples: list[Sample]) -> str:
    walls = [s.wall_s for s in samples]
    peak = statistics.median(s.peak_mb for s in samples)
    return f"{min(walls):6.3f} {statistics.median(walls):6.3f} {max(walls):6.3f} {peak:6.0f}"


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each command (default: 7)")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="CHECKOUT",
        help="also time the commands of this checkout (e.g. a `git worktree` of an older commit)",
    )
    parser.add_argument("--python", default=sys.executable, help="the interpreter (default: this one)")
    args = parser.parse_args(argv)
    roots = {"this": ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}

    print(f"load average before: {_load()}")
    with tempfile.TemporaryDirectory(prefix="splitee-startup-") as tmp:
        work = Path(tmp)
        (work / "startup.yaml").write_text(RUN)
        _time_once(
            [
                args.python,
                "-m",
                "simulator.cli",
                "run",
                str(work / "startup.yaml"),
                "--timing-only",
                "--quiet",
                "--no-report",
                "--out",
                str(work / "run"),
            ],
            ROOT,
        )
        scale = {
            "python -c pass": [args.python, "-c", "pass"],
            "python -c 'import torch'": [args.python, "-c", "import torch"],
        }
        cases = [(name, "-", cmd) for name, cmd in scale.items()]
        cases += [
            (name, label, cmd) for name, cmd in _commands(args.python, work / "run", work).items() for label in roots
        ]
        results: dict[tuple[str, str], list[Sample]] = {(name, label): [] for name, label, _ in cases}
        for _, label, cmd in cases:  # warm-up: page cache, .pyc files
            _time_once(cmd, roots.get(label, ROOT))
        for _ in range(args.repeats):
            for name, label, cmd in cases:
                results[name, label].append(_time_once(cmd, roots.get(label, ROOT)))

    print(f"load average after:  {_load()}")
    for label, root in roots.items():
        print(f"{label}: {root}")
    print(f"{args.repeats} runs each; wall seconds min, median, max; median peak RSS in MB")
    print(f"{'command':<34}" + "".join(f" | {label:<27}" for label in roots))
    names = list(dict.fromkeys(name for name, _, _ in cases))
    for name in names:
        cells = (
            [_cell(results[name, "-"])] if (name, "-") in results else [_cell(results[name, label]) for label in roots]
        )
        print(f"{name:<34}" + "".join(f" | {c:<27}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
