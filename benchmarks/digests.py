"""Behaviour digests: SHA-256 of the result files of a fixed set of runs, to show that a change to the code's
structure left every result byte-identical (same seed, same threads).

The runs: the quickstart; every strategy and baseline on the quickstart fleet for 2 rounds; a timing-only city
fleet of 1 000 clients; Sequential's three server orders, with training and timing-only; the churn what-if with a
round deadline and battery-powered phones; a replay of the quickstart under another BLE uplink. Hashed per run:
rounds.csv without its host_seconds column, clients.csv, events.csv and early_exit.csv (the files a run wrote of
these).

    python benchmarks/digests.py [--out digests.json] [--check digests.json] [--only NAME ...] [--jobs 2]

With --check it compares against a stored file and exits 1 on any difference, naming the run and the file.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
STRATEGIES = ("sequential", "averaging", "homogeneous_splitee", "vanilla_sl", "splitfed_v1", "splitfed_v2",
              "fedavg", "centralized", "standalone_exit")
FILES = ("rounds.csv", "clients.csv", "events.csv", "early_exit.csv")

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


def _runs(tmp: Path) -> dict[str, list[str]]:
    """name -> the `splitee` arguments of the run (the replay is listed last: it needs the quickstart)."""
    churn = tmp / "churn_battery.yaml"
    churn.write_text(CHURN_BATTERY)
    runs = {"quickstart": ["run", str(QUICKSTART)]}
    for s in STRATEGIES:
        runs[f"strategy-{s}"] = ["run", str(QUICKSTART), "--set", f"strategy.name={s}", "--set", "training.rounds=2",
                                 "--set", "eval.every=1"]
    runs["strategy-standalone_exit"] += ["--set", "strategy.common_cut=3"]
    city = ROOT / "scenarios" / "whatif" / "city_fleet.yaml"
    runs["city-1000-timing"] = ["run", str(city), "--timing-only", "--set", "training.rounds=20",
                                "--set", "clients.0.count=400", "--set", "clients.1.count=300",
                                "--set", "clients.2.count=200", "--set", "clients.3.count=100",
                                "--set", "output.events=csv"]
    runs["churn-deadline-battery"] = ["run", str(churn)]
    runs["churn-deadline-battery-timing"] = ["run", str(churn), "--timing-only"]
    runs["battery-timing-sequential"] = ["run", str(churn), "--timing-only", "--set", "strategy.name=sequential",
                                         "--set", "training.round_deadline_s=null"]
    for order in ("arrival", "round_robin"):
        runs[f"sequential-{order}"] = ["run", str(QUICKSTART), "--set", "strategy.name=sequential",
                                       "--set", f"strategy.order={order}", "--set", "training.rounds=2"]
        runs[f"sequential-{order}-timing"] = ["run", str(QUICKSTART), "--timing-only", "--set",
                                              "strategy.name=sequential", "--set", f"strategy.order={order}"]
    runs["quickstart-timing-turns"] = ["run", str(QUICKSTART), "--timing-only", "--set", "strategy.name=sequential"]
    runs["replay"] = ["replay", str(tmp / "quickstart"), "--set", "clients.2.link.uplink_bps=500000.0"]
    return runs


def _digest(path: Path) -> str:
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


def _one(name: str, argv: list[str], tmp: Path) -> dict[str, str]:
    out = tmp / name
    cmd = [sys.executable, "-m", "simulator.cli", *argv, "--out", str(out)]
    if argv[0] == "run":
        cmd += ["--quiet", "--no-report", "--threads", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return {f: _digest(out / f) for f in FILES if (out / f).exists()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the digests here (JSON)")
    ap.add_argument("--check", type=Path, help="compare with digests stored earlier; exit 1 on a difference")
    ap.add_argument("--only", nargs="*", help="run only these names")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        runs = _runs(tmp)
        names = [n for n in runs if not args.only or n in args.only]
        if "replay" in names and "quickstart" not in names:
            names.insert(0, "quickstart")
        first = [n for n in names if n != "replay"]
        with ThreadPoolExecutor(args.jobs) as pool:
            got = dict(zip(first, pool.map(lambda n: _one(n, runs[n], tmp), first)))
        if "replay" in names:
            got["replay"] = _one("replay", runs["replay"], tmp)

    for name, files in got.items():
        for f, d in files.items():
            print(f"{name:<32} {f:<16} {d[:16]}")
    if args.out:
        args.out.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    if args.check:
        want = json.loads(args.check.read_text())
        bad = [(n, f) for n in got for f in set(got[n]) | set(want.get(n, {}))
               if got[n].get(f) != want.get(n, {}).get(f)]
        for n, f in bad:
            print(f"DIFFERENT: {n} {f}", file=sys.stderr)
        print(f"{'no' if not bad else len(bad)} difference(s) in {sum(len(v) for v in got.values())} files")
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
