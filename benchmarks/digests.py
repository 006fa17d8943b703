"""Behaviour digests: SHA-256 of the result files of fixed runs, to show that a change left every result byte-identical.

The runs: the quickstart; every strategy and baseline on the quickstart fleet for 2 rounds; a timing-only city
fleet of 1 000 clients; Sequential's three server orders, with training and timing-only; the churn what-if with a
round deadline and battery-powered phones; a replay of the quickstart under another BLE uplink. Hashed per run:
rounds.csv without its host_seconds column, clients.csv, events.csv and early_exit.csv (the files a run wrote).

    python benchmarks/digests.py [--out FILE] [--check FILE] [--only NAME ...] [--jobs 2]
    python benchmarks/digests.py --base COMMIT [--out FILE] [--only NAME ...] [--jobs 2]

A training run's digests depend on the CPU's kernels (same seed, same threads, another CPU: other low bits), so
digests recorded on another machine can differ with no change to the code; timing-only runs must match anywhere.
--base COMMIT therefore records COMMIT's digests on this machine (its code, checked out in a temporary git
worktree, run with this script's run list) and compares the current tree with them; --out keeps those base
digests, and a later `--base COMMIT --out FILE` reuses them when they were recorded here from the same commit with
the same runs and torch. --check FILE compares with digests stored earlier and warns when they were recorded on
another CPU. Exit status 1 on a difference, 2 on bad input. A run the base commit refuses (exit status 2: a key or
option it does not know yet) is reported as not comparable, not as a difference.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # digest_tools beside this script, from any folder
from digest_tools import (  # noqa: E402
    BadInput,
    Recorded,
    base_worktree,
    compare,
    cpu_warning,
    list_warning,
    load_recorded,
    machine_facts,
    resolve_commit,
    reusable,
    tree_commit,
)

__all__ = ["FILES", "THREADS", "Tree", "run_list", "timing_only", "digest_file", "run_trees", "main"]

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = (
    "sequential",
    "averaging",
    "homogeneous_splitee",
    "vanilla_sl",
    "splitfed_v1",
    "splitfed_v2",
    "fedavg",
    "centralized",
    "standalone_exit",
)
FILES = ("rounds.csv", "clients.csv", "events.csv", "early_exit.csv")
THREADS = 1  # torch threads of every run: digests are only reproducible for a fixed thread count

CHURN_BATTERY = """\
name: churn_battery
seed: 3
dataset: {name: fashion_mnist, max_train: 4000, max_test: 1000, partition: {kind: dirichlet, alpha: 1.0}}
model: {width: 8}
training: {rounds: 6, local_steps: 6, batch_size: 32, round_deadline_s: 60.0}
strategy: {name: averaging}
network:
  media:
    home_ap: {capacity_bps: 40.0e6}
server: {device: h100_server, workers: 2}
clients:
  - {device: rpi4, link: wifi4, cut: 2, count: 2, medium: home_ap}
  - {device: rpi_zero2w, link: ble, cut: 1}
  - device: {base: smartphone_midrange, battery_j: 120.0}
    link: lte
    cut: 3
    count: 2
    name: phone
    availability: {model: markov, mean_on_s: 60.0, mean_off_s: 30.0, start: stationary}
  - {device: {base: esp32_s3, battery_j: 40.0}, link: ble, cut: 1, name: sensor}
  - {device: jetson_nano, link: wifi6, cut: 5}
eval: {every: 3}
output: {checkpoint_every: 0}
"""


def run_list(root: Path, tmp: Path) -> dict[str, list[str]]:
    """name -> the `splitee` arguments of the run on the tree at `root`, writing into `tmp`.

    The replay is listed last: it re-times the quickstart's folder, tmp/quickstart. The scenarios are the tree's own.
    """
    quickstart = str(root / "scenarios" / "quickstart.yaml")
    churn = str(tmp / "churn_battery.yaml")  # written by prepare()
    runs = {"quickstart": ["run", quickstart]}
    for s in STRATEGIES:
        runs[f"strategy-{s}"] = [
            "run",
            quickstart,
            "--set",
            f"strategy.name={s}",
            "--set",
            "training.rounds=2",
            "--set",
            "eval.every=1",
        ]
    runs["strategy-standalone_exit"] += ["--set", "strategy.common_cut=3"]
    city = str(root / "scenarios" / "whatif" / "city_fleet.yaml")
    runs["city-1000-timing"] = [
        "run",
        city,
        "--timing-only",
        "--set",
        "training.rounds=20",
        "--set",
        "clients.0.count=400",
        "--set",
        "clients.1.count=300",
        "--set",
        "clients.2.count=200",
        "--set",
        "clients.3.count=100",
        "--set",
        "output.events=csv",
    ]
    runs["churn-deadline-battery"] = ["run", churn]
    runs["churn-deadline-battery-timing"] = ["run", churn, "--timing-only"]
    runs["battery-timing-sequential"] = [
        "run",
        churn,
        "--timing-only",
        "--set",
        "strategy.name=sequential",
        "--set",
        "training.round_deadline_s=null",
    ]
    for order in ("arrival", "round_robin"):
        runs[f"sequential-{order}"] = [
            "run",
            quickstart,
            "--set",
            "strategy.name=sequential",
            "--set",
            f"strategy.order={order}",
            "--set",
            "training.rounds=2",
        ]
        runs[f"sequential-{order}-timing"] = [
            "run",
            quickstart,
            "--timing-only",
            "--set",
            "strategy.name=sequential",
            "--set",
            f"strategy.order={order}",
        ]
    runs["quickstart-timing-turns"] = ["run", quickstart, "--timing-only", "--set", "strategy.name=sequential"]
    runs["replay"] = ["replay", str(tmp / "quickstart"), "--set", "clients.2.link.uplink_bps=500000.0"]
    return runs


def prepare(tmp: Path) -> None:
    """Write the files the run list names that no tree holds (the churn scenario)."""
    (tmp / "churn_battery.yaml").write_text(CHURN_BATTERY)


def command(argv: list[str], out: Path) -> list[str]:
    """The `python -m simulator.cli` arguments of one run writing into `out`."""
    cmd = ["-m", "simulator.cli", *argv, "--out", str(out)]
    if argv[0] == "run":
        cmd += ["--quiet", "--no-report", "--threads", str(THREADS)]
    return cmd


def timing_only() -> list[str]:
    """The runs that train nothing: their digests must match on any CPU."""
    return [n for n, argv in run_list(Path("."), Path(".")).items() if "--timing-only" in argv]


def run_list_digest() -> str:
    """SHA-256 of the run list (tree and folder left out): stored digests are of these runs and no others."""
    runs = run_list(Path("<tree>"), Path("<tmp>"))
    return hashlib.sha256(json.dumps([runs, CHURN_BATTERY, THREADS, FILES]).encode()).hexdigest()


def digest_file(path: Path) -> str:
    """SHA-256 of a result file; rounds.csv without its host_seconds column (wall time of this host)."""
    if path.name == "rounds.csv":
        rows = list(csv.reader(io.StringIO(path.read_text())))
        drop = rows[0].index("host_seconds") if rows and "host_seconds" in rows[0] else None
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for r in rows:
            w.writerow([v for k, v in enumerate(r) if k != drop])
        data = buf.getvalue().encode()
    else:
        data = path.read_bytes()
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Tree:
    """A source tree whose code the runs run: its root goes first on PYTHONPATH and is their working folder."""

    root: Path
    facts: dict[str, Any]  # commit, dirty
    refusal_ok: bool  # a base commit may refuse a run it predates: not comparable rather than a failure


class RunFailed(Exception):
    """A run of the tree under test failed: nothing can be said about its digests."""


class _Children:
    """The run processes alive now, so that an interruption stops them instead of waiting for them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[subprocess.Popen[str]] = set()
        self.stopping = False

    def run(self, cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
        with self._lock:
            if self.stopping:
                raise RunFailed("stopped")
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            self._live.add(proc)
        try:
            _, err = proc.communicate()
        finally:
            with self._lock:
                self._live.discard(proc)
        return proc.returncode, err

    def stop(self) -> None:
        with self._lock:
            self.stopping = True
            live = list(self._live)
        for proc in live:
            proc.terminate()
        for proc in live:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _env(tree: Path, folder: Path) -> dict[str, str]:
    """The tree's code first on the path; a cost-table cache of its own, so no tree reads a table another measured."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tree), env.get("PYTHONPATH", "")) if p)
    env["XDG_CACHE_HOME"] = str(folder / "cache")
    return env


def _check_import(tree: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import simulator; print(simulator.__file__)"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    where = Path(done.stdout.strip() or "?").resolve()
    if done.returncode != 0 or not where.is_relative_to(tree.resolve()):
        raise RunFailed(
            f"the runs of {tree} would not import its simulator (they import {where}; {done.stderr.strip()[-300:]})"
        )


def _refusal(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")] or err.splitlines()[-1:] or ["?"]
    return f"the base refused it ({lines[-1][:300]})"


def run_trees(trees: list[Tree], names: list[str], tmp: Path, jobs: int) -> list[Recorded]:
    """Every named run on every tree, `jobs` at a time (a replay after the quickstart it re-times)."""
    folders = []
    for i, tree in enumerate(trees):
        folders.append(tmp / f"tree-{i}")
        folders[-1].mkdir()
        prepare(folders[-1])
        _check_import(tree.root, _env(tree.root, folders[-1]))
    outcomes: dict[tuple[int, str], dict[str, str] | str] = {}
    children = _Children()

    def one(key: tuple[int, str]) -> dict[str, str] | str:
        i, name = key
        tree, folder = trees[i], folders[i]
        if name == "replay" and isinstance(outcomes.get((i, "quickstart")), str):
            return "the quickstart it re-times is not comparable"
        out = folder / name
        rc, err = children.run(
            [sys.executable, *command(run_list(tree.root, folder)[name], out)], tree.root, _env(tree.root, folder)
        )
        if rc == 2 and tree.refusal_ok:
            return _refusal(err)  # a key or option this commit does not know yet
        if rc != 0:
            raise RunFailed(f"{name} on {tree.root}: exit status {rc}\n{err[-2000:]}")
        return {f: digest_file(out / f) for f in FILES if (out / f).exists()}

    # the same run on each tree side by side: a failure of the tree under test shows early
    first = [(i, n) for n in names if n != "replay" for i in range(len(trees))]
    second = [(i, n) for n in names if n == "replay" for i in range(len(trees))]
    with ThreadPoolExecutor(jobs) as pool:
        try:
            for batch in (first, second):
                outcomes.update(zip(batch, pool.map(one, batch)))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            children.stop()
            raise
    recorded = []
    for i, tree in enumerate(trees):
        got = {n: outcomes[i, n] for n in names}
        recorded.append(
            Recorded(
                {n: d for n, d in got.items() if isinstance(d, dict)},
                {n: d for n, d in got.items() if isinstance(d, str)},
                dict(tree.facts),
            )
        )
    return recorded


def _names(only: list[str] | None) -> list[str]:
    everything = list(run_list(Path("."), Path(".")))
    unknown = sorted(set(only or ()) - set(everything))
    if unknown:
        raise BadInput(f"--only: no run named {', '.join(unknown)} (runs: {', '.join(everything)})")
    names = [n for n in everything if not only or n in only]
    if "replay" in names and "quickstart" not in names:
        names.insert(0, "quickstart")  # the replay re-times the quickstart's folder
    return names


def _print_digests(rec: Recorded) -> None:
    for name, files in rec.runs.items():
        for f, d in files.items():
            print(f"{name:<32} {f:<16} {d[:16]}")


def _report(got: Recorded, want: Recorded, against: str) -> int:
    result = compare(got, want, against)
    for name, f in result.different:
        print(f"DIFFERENT: {name} {f}", file=sys.stderr)
    for name, why in result.not_comparable.items():
        print(f"NOT COMPARABLE: {name}: {why}", file=sys.stderr)
    print(result.summary())
    return 1 if result.different else 0


def _write(path: Path, rec: Recorded) -> None:
    path.write_text(json.dumps(rec.to_json(), indent=1, sort_keys=True) + "\n")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", metavar="COMMIT", help="record COMMIT's digests on this machine and compare with them")
    ap.add_argument("--out", type=Path, help="write the digests here (JSON); with --base, the base's digests")
    ap.add_argument("--check", type=Path, help="compare with digests stored earlier; exit 1 on a difference")
    ap.add_argument("--only", nargs="*", help="run only these names")
    ap.add_argument("--jobs", type=int, default=2)
    return ap


def _with_base(args: argparse.Namespace, names: list[str], here: dict[str, Any], current: Tree, tmp: Path) -> int:
    sha = resolve_commit(ROOT, args.base)
    cached = reusable(args.out, sha, here, run_list_digest(), names) if args.out else None
    if cached is not None:
        print(
            f"the digests of {sha[:12]} recorded on this machine are reused from {args.out} (delete it to "
            "record them again)",
            file=sys.stderr,
        )
        want, (got,) = cached, run_trees([current], names, tmp, args.jobs)
    else:
        with base_worktree(ROOT, sha, tmp) as tree:
            print(
                f"recording {len(names)} runs of {sha[:12]} (in {tree}) and of the current tree, {args.jobs} at a time",
                file=sys.stderr,
            )
            base = Tree(tree, {"commit": sha, "dirty": False}, refusal_ok=True)
            want, got = run_trees([base, current], names, tmp, args.jobs)
        if args.out:
            _write(args.out, want.with_facts(here, run_list_digest()))
    _print_digests(got)
    return _report(got, want, f"{sha[:12]} on this machine")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.base and args.check:
            raise BadInput("--base and --check: give one (--base records the digests it compares with)")
        if args.jobs < 1:
            raise BadInput(f"--jobs: {args.jobs} is not a positive number of runs at a time")
        names = _names(args.only)
        want = load_recorded(args.check) if args.check else None  # a bad file is refused before any run
        here = machine_facts(sys.executable, THREADS)
        current = Tree(ROOT, tree_commit(ROOT), refusal_ok=False)
        with tempfile.TemporaryDirectory(prefix="digests-") as t:
            if args.base:
                return _with_base(args, names, here, current, Path(t))
            (got,) = run_trees([current], names, Path(t), args.jobs)
    except BadInput as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RunFailed as err:
        print(f"error: a run failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the runs were stopped and the base worktree removed", file=sys.stderr)
        return 130
    _print_digests(got)
    if args.out:
        _write(args.out, got.with_facts(here, run_list_digest()))
    if want is None:
        return 0
    for warning in (
        cpu_warning(want.facts, here, str(args.check), timing_only()),
        list_warning(want.facts, here, run_list_digest(), str(args.check)),
    ):
        if warning:
            print(warning, file=sys.stderr)
    return _report(got, want, str(args.check))


if __name__ == "__main__":
    raise SystemExit(main())
