"""Mutation run over every command: damaged scenarios, profiles, run folders, checkpoints, sweeps and output paths.

Each case runs `splitee ...` in its own process with a time limit and is classified as
  refused    exit status 2, nothing on stdout and exactly one line on stderr, starting `error:`
  ok         exit status 0
  unclean    exit status 2, but not that one line alone: output printed before the refusal (a cut list, a table,
             a warning), or an error of several lines
  traceback  a Python traceback, a crash (signal), exit status 1 (an unexpected failure) or any other status
  hang       still running at the time limit
  lost       a file the case must not touch (an input, a bystander file) was changed or deleted
  executed   a crafted file made the tool run code (a marker file appeared)
The goal is zero of the last five.

    python benchmarks/mutate.py                     # every case, 2 at a time, 60 s each
    python benchmarks/mutate.py --limit 80 --jobs 2 # a sample (stratified over the case families)
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.set_int_max_str_digits(0)  # this script writes 5 000-digit numbers into scenario files
BAD_CLASSES = ("unclean", "traceback", "hang", "lost", "executed")

# Values a careless or hostile user may put into any field.
VALUES: list[Any] = [
    float("inf"),
    float("-inf"),
    float("nan"),
    -1,
    0,
    1e-310,
    1e308,
    10**5000 - 1,
    2**64,
    "text",
    "",
    [1, 2],
    {"a": 1},
    None,
    True,
    "x" * 20_000,
    "..",
    "../x",
    3.5,
    -1e-9,
    10**9,
]

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 3,
    "dataset": {"name": "synthetic", "synthetic": {"train_size": 120, "test_size": 40, "image_size": 12}},
    "model": {"width": 4},
    "training": {"rounds": 1, "local_steps": 2, "batch_size": 8},
    "strategy": {"name": "averaging"},
    "network": {"media": {"ap": {"capacity_bps": 2.0e6}}},
    "eval": {"thresholds": [0.0, 0.5, 1.0]},
    "output": {"checkpoint_every": 1, "progress": False},
    "clients": [
        {"device": "rpi4", "link": "wifi4", "cut": 1, "count": 2, "medium": "ap"},
        {"device": {"base": "jetson_nano", "flops_per_s": 4.0e10}, "link": "ble", "cut": 3},
    ],
}


@dataclass
class Case:
    family: str
    name: str
    argv: list[str]  # after `splitee`
    cwd: Path
    guard: list[Path] = field(default_factory=list)  # files that must stay byte-identical
    marker: Path | None = None  # must not appear
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[], None] | None = None


@dataclass
class Outcome:
    case: Case
    kind: str
    rc: int | None
    seconds: float
    detail: str


def _digest(paths: list[Path]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for p in paths:
        if p.is_dir():
            for q in sorted(p.rglob("*")):
                if q.is_file() and not q.is_symlink():
                    out[str(q)] = hashlib.sha1(q.read_bytes()).hexdigest()
        else:
            out[str(p)] = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else None
    return out


def classify(rc: int | None, stdout: str, stderr: str, lost: bool, executed: bool, hung: bool) -> str:
    if executed:
        return "executed"
    if hung:
        return "hang"
    if lost:
        return "lost"
    if "Traceback (most recent call last)" in stderr or rc is None or rc < 0 or "unexpected failure" in stderr:
        return "traceback"
    if rc == 0 or (rc == 1 and not stderr.strip()):  # 1: `splitee sweep` ran, and some points failed (recorded)
        return "ok"
    if rc != 2:
        return "traceback"
    # A clean refusal is its one line and nothing else: every check runs before the first line of output, so a
    # refused command never leaves a cut list, a table or a progress bar behind it.
    lines = stderr.rstrip("\n").split("\n")
    if not stdout and len(lines) == 1 and lines[0].startswith("error: ") and "\r" not in lines[0]:
        return "refused"
    return "unclean"


def run_case(case: Case, timeout: float, splitee: list[str]) -> Outcome:
    if case.prepare is not None:
        case.prepare()
    before = _digest(case.guard)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **case.env}
    t0 = time.monotonic()
    hung = False
    try:
        proc = subprocess.run(
            [*splitee, *case.argv],
            cwd=case.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            errors="replace",
        )
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        hung, rc, stdout = True, None, ""
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    seconds = time.monotonic() - t0
    lost = _digest(case.guard) != before
    executed = case.marker is not None and case.marker.exists()
    kind = classify(rc, stdout, stderr, lost, executed, hung)
    tail = [ln for ln in stderr.splitlines() if ln.strip()]
    detail = tail[-1][:300] if tail else ""
    if kind == "unclean":  # what came before the error line is the finding
        shown = [ln for ln in (stdout + stderr).splitlines() if ln.strip()]
        detail = (
            f"{len(stdout.splitlines())} stdout / {len(tail)} stderr lines, first: {shown[0][:150]}"
            if shown
            else "no output"
        )
    return Outcome(case, kind, rc, seconds, detail)


# --- fixtures ----------------------------------------------------------------------------------------------------


def _dump(data: Any, path: Path) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False, width=10**9))
    return path


def _leaves(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _leaves(v, (*prefix, k))] or [prefix]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _leaves(v, (*prefix, i))] or [prefix]
    return [prefix]


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(data)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def _splitee_cmd() -> list[str]:
    beside = Path(sys.executable).with_name("splitee")
    return [str(beside)] if beside.is_file() else [sys.executable, "-m", "simulator.cli"]


def build_fixtures(work: Path, splitee: list[str]) -> dict[str, Path]:
    """A tiny scenario, a finished run of it, a checkpointed run, a sweep file and a copy of the package."""
    fx: dict[str, Path] = {}
    fx["tiny"] = _dump(TINY, work / "tiny.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = work / "finished"
    subprocess.run(
        [*splitee, "run", str(fx["tiny"]), "--out", str(run), "--quiet"],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    fx["run"] = run
    # an unfinished run: its checkpoint after round 1 of 3 (a run of 3 rounds killed is the same folder)
    two = _dump(_set(TINY, ("training", "rounds"), 3), work / "three.yaml")
    fx["three"] = two
    part = work / "partial-src"
    proc = subprocess.Popen(
        [*splitee, "run", str(two), "--out", str(part), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    while not (part / "checkpoint" / "state.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    fx["partial"] = part
    # a sweep table as `splitee sweep` writes it: a 2 x 2 grid, one point repeated with a second seed
    head = (
        "point,status,error,clients.0.count,capacity_bps,seed,final_accuracy,mean_exit_accuracy,sim_time_s,"
        "energy_j,bytes_up,bytes_down,host_seconds,rounds,run_dir"
    )
    rows = [
        f"p{i},ok,,{n},{bw},{seed},{0.1 * (i + 1):.3f},0.2,{1.5 * (i + 1)},{10 * (i + 1)},1000,100,0.5,1,x/p{i}"
        for i, (n, bw, seed) in enumerate([(1, 2e6, 3), (1, 2e7, 3), (2, 2e6, 3), (2, 2e7, 3), (2, 2e7, 4)])
    ]
    fx["table"] = work / "sweep.csv"
    fx["table"].write_text("\n".join([head, *rows]) + "\n")
    fx["sweep"] = _dump({"name": "sw", "base": "tiny.yaml", "grid": {"clients.0.count": [1, 2]}}, work / "sw.yaml")
    pkg = work / "pkg"
    for name in ("simulator", "analysis", "device_profiles"):
        shutil.copytree(ROOT / name, pkg / name, ignore=shutil.ignore_patterns("__pycache__"))
    fx["pkg"] = pkg
    return fx


# --- case families -------------------------------------------------------------------------------------------------


def scenario_value_cases(work: Path, fx: dict[str, Path], rng: random.Random) -> list[Case]:
    """A value from VALUES at a leaf of a shipped scenario or sweep file (validate), or of the tiny one (run)."""
    cases = []
    shipped = sorted((ROOT / "scenarios").rglob("*.yaml"))
    shipped = [p for p in shipped if "sweeps" not in p.parts]
    for src in shipped:
        data = yaml.safe_load(src.read_text())
        if isinstance(data.get("base"), str):  # a sweep file (validated as one): its copy names the same base
            data["base"] = str(src.parent / data["base"])
        leaves = [p for p in _leaves(data) if p]
        for k, path in enumerate(rng.sample(leaves, min(len(leaves), 12))):
            value = rng.choice(VALUES)
            target = work / "cases" / f"{src.stem}-{k}.yaml"
            text = yaml.safe_dump(_set(data, path, value), sort_keys=False, width=10**9)
            target.write_text(text.replace("name: " + str(data.get("name")), "name: " + str(data.get("name")), 1))
            # relative paths (traces) keep working: the copy sits beside nothing, so point at the original folder
            cases.append(
                Case(
                    "scenario-value",
                    f"validate {src.name} {'.'.join(map(str, path))}={str(value)[:20]}",
                    ["validate", str(target)],
                    cwd=src.parent,
                    guard=[src],
                )
            )
    tiny = yaml.safe_load(fx["tiny"].read_text())
    leaves = [p for p in _leaves(tiny) if p]
    for k, path in enumerate(leaves):
        for value in rng.sample(VALUES, 3):
            target = work / "cases" / f"tiny-run-{k}-{len(cases)}.yaml"
            _dump(_set(tiny, path, value), target)
            out = work / "outs" / f"run-{len(cases)}"
            cases.append(
                Case(
                    "run-value",
                    f"run tiny {'.'.join(map(str, path))}={str(value)[:20]}",
                    ["run", str(target), "--out", str(out), "--quiet"],
                    cwd=work,
                    guard=[fx["tiny"]],
                )
            )
    return cases


def scenario_file_cases(work: Path, fx: dict[str, Path], rng: random.Random) -> list[Case]:
    """Damaged scenario files: truncated, non-UTF-8, binary, empty, alias bombs, deep nesting, duplicates."""
    cases = []
    text = fx["tiny"].read_bytes()
    quick = (ROOT / "scenarios" / "quickstart.yaml").read_bytes()
    variants: dict[str, bytes] = {}
    for cut in sorted(rng.sample(range(1, len(text)), 12)):
        variants[f"truncated at {cut}"] = text[:cut]
    for cut in sorted(rng.sample(range(1, len(quick)), 8)):
        variants[f"quickstart truncated at {cut}"] = quick[:cut]
    for k in range(8):
        pos = rng.randrange(len(text))
        variants[f"non-UTF-8 byte at {pos}"] = text[:pos] + bytes([0xFF, 0xFE, 0x80]) + text[pos:]
    variants.update(
        {
            "empty": b"",
            "binary": bytes(rng.randrange(256) for _ in range(4096)),
            "only a list": b"- 1\n- 2\n",
            "a number": b"42\n",
            "nul bytes": text.replace(b"\n", b"\x00\n", 3),
            "tabs": text.replace(b"  ", b"\t"),
            "two documents": text + b"\n---\n" + text,
            "duplicate key": text + b"\nname: again\n",
            "deep flow nesting": b"name: x\nclients: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
            "deep block nesting": b"name: x\nclients:\n" + b"".join(b"  " * i + b"- \n" for i in range(3000)),
            "long key": b"name: x\n" + b"k" * 200_000 + b": 1\n",
            "huge seed": text + b"\nseed: " + b"9" * 5000 + b"\n",
            "python tag": text + b"\nx: !!python/object/apply:os.system ['touch MARKER']\n",
            "bad timestamp": text + b"\nx: !!timestamp 2020-13-45\n",
            "unhashable key": text + b"\n? [a, b]\n: 1\n",
        }
    )
    for field_name in ("strategy", "compute", "model", "clients", "eval", "description"):
        bomb = (
            text.decode().replace(f"\n{field_name}:", f"\nold_{field_name}:")
            if f"\n{field_name}:" in text.decode()
            else text.decode()
        )
        lines = ['x_a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        for prev, cur in zip("abcdefgh", "bcdefghi"):
            lines.append(f"x_{cur}: &{cur} [{','.join(['*' + prev] * 9)}]")
        variants[f"alias bomb in {field_name}"] = ("\n".join(lines) + "\n" + bomb + f"\n{field_name}: *i\n").encode()
    variants["alias bomb in strategy.name"] = (
        text.decode().replace("name: averaging", "name: *i")
        + "\n"
        + "\n".join(f"x_{c}: &{c} [{','.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi"))
    ).encode()
    variants["alias bomb in strategy.name"] = (
        'x_a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + variants["alias bomb in strategy.name"].decode()
    ).encode()
    for label, data in variants.items():
        target = work / "cases" / f"file-{len(cases)}.yaml"
        target.write_bytes(data)
        marker = work / "cases" / "MARKER"
        for cmd in (
            ["validate", str(target)],
            ["run", str(target), "--out", str(work / "outs" / f"f{len(cases)}"), "--quiet"],
        ):
            cases.append(Case("scenario-file", f"{cmd[0]} {label}", cmd, cwd=work / "cases", marker=marker))
    # --set values
    for value in (
        "'" + "x" * 10_000 + "'",
        "[" * 5000,
        "9" * 5000,
        ".inf",
        ".nan",
        "1e-310",
        "{a: 1}",
        "&a [*a]",
        "!!python/name:os.system",
        "\xff",
    ):
        for key in (
            "seed",
            "training.rounds",
            "clients.0.device.flops_per_s",
            "strategy.name",
            "clients.9.cut",
            "model.width",
            "clients.0.link.loss_rate",
        ):
            cases.append(
                Case(
                    "set-value",
                    f"--set {key}={value[:20]}",
                    ["validate", str(fx["tiny"]), "--set", f"{key}={value}"],
                    cwd=work,
                )
            )
    return cases


def profile_cases(work: Path, fx: dict[str, Path], rng: random.Random) -> list[Case]:
    """A damaged built-in profile in a copy of the package: devices, validate."""
    cases = []
    pkg = fx["pkg"]
    originals = {p: p.read_bytes() for p in (pkg / "device_profiles").rglob("*.yaml")}
    targets = sorted(originals)
    damages: list[tuple[str, Callable[[bytes], bytes]]] = [
        ("non-UTF-8", lambda b: b[:10] + b"\xff\xfe" + b[10:]),
        ("truncated", lambda b: b[: len(b) // 2]),
        ("empty", lambda b: b""),
        ("a list", lambda b: b"- 1\n"),
        ("inf number", lambda b: b.replace(b"_w: ", b"_w: .inf #", 1) if b"_w: " in b else b + b"\nidle_w: .inf\n"),
        ("nan number", lambda b: b + b"\nlatency_s: .nan\n"),
        (
            "alias bomb",
            lambda b: (
                b'x: &a ["l","l","l","l","l","l","l","l","l"]\n'
                + b"".join(f"x{c}: &{c} [{','.join(['*' + p] * 9)}]\n".encode() for p, c in zip("abcdefgh", "bcdefghi"))
                + b
            ),
        ),
    ]
    for label, damage in damages:
        for target in rng.sample(targets, 2):

            def prepare(target: Path = target, damage: Callable[[bytes], bytes] = damage) -> None:
                for p, data in originals.items():
                    p.write_bytes(data)
                target.write_bytes(damage(originals[target]))

            env = {"PYTHONPATH": str(pkg)}
            for argv in (["devices"], ["validate", str(fx["tiny"])]):
                cases.append(
                    Case(
                        "profile",
                        f"{argv[0]} with {target.parent.name}/{target.name} {label}",
                        [sys.executable, "-m", "simulator.cli", *argv],
                        cwd=work,
                        env=env,
                        prepare=prepare,
                    )
                )
    return cases


def _damage_run(src: Path, dst: Path, how: str, rng: random.Random) -> None:
    """A copy of the run folder `src` at `dst`, one file damaged: `how` is FILE:DAMAGE."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    file, _, what = how.partition(":")
    _damage_file(dst / file, what, rng)


def _damage_file(p: Path, what: str, rng: random.Random) -> None:
    if what == "delete":
        p.unlink()
    elif what == "truncate":
        b = p.read_bytes()
        p.write_bytes(b[: rng.randrange(1, max(2, len(b)))])
    elif what == "empty":
        p.write_bytes(b"")
    elif what == "binary":
        p.write_bytes(bytes(rng.randrange(256) for _ in range(2048)))
    elif what == "non-utf8":
        b = p.read_bytes()
        p.write_bytes(b[:20] + b"\xff\xfe\x80" + b[20:])
    elif what == "dir":
        p.unlink()
        p.mkdir()
    elif what == "link":
        p.unlink()
        p.symlink_to("/etc/hostname")
    elif what == "letters":  # numbers replaced by words in every data row
        lines = p.read_text().splitlines()
        p.write_text(
            "\n".join(
                [lines[0]] + [",".join("abc" if c[:1].isdigit() else c for c in ln.split(",")) for ln in lines[1:]]
            )
            + "\n"
        )
    elif what == "inf":
        lines = p.read_text().splitlines()
        p.write_text(
            "\n".join(
                [lines[0]] + [",".join("inf" if c[:1].isdigit() else c for c in ln.split(",")) for ln in lines[1:]]
            )
            + "\n"
        )
    elif what == "cutrow":  # a copy stopped inside the last row: its last cell loses digits and the newline
        b = p.read_bytes()
        p.write_bytes(b[: len(b) - rng.randrange(2, 6)])
    elif what == "shortrow":  # the last row lost its last cells, its newline kept
        lines = p.read_text().splitlines()
        cells = lines[-1].split(",")
        p.write_text("\n".join(lines[:-1] + [",".join(cells[: max(1, len(cells) - rng.randrange(1, 4))])]) + "\n")
    elif what.startswith("word@"):  # one cell of one column (by name) becomes a word
        lines = p.read_text().splitlines()
        col = lines[0].split(",").index(what[5:])
        row = rng.randrange(1, len(lines))
        cells = lines[row].split(",")
        cells[col] = "abc"
        lines[row] = ",".join(cells)
        p.write_text("\n".join(lines) + "\n")
    elif what == "dropcol":
        lines = p.read_text().splitlines()
        p.write_text("\n".join(",".join(ln.split(",")[1:]) for ln in lines) + "\n")
    elif what == "extracol":
        lines = p.read_text().splitlines()
        p.write_text("\n".join(ln + ",1" for ln in lines[1:]) + "\n")
    elif what.startswith("json="):
        key, _, value = what[5:].partition("=")
        data = json.loads(p.read_text())
        data[key] = json.loads(value)
        p.write_text(json.dumps(data))


def run_folder_cases(work: Path, fx: dict[str, Path], rng: random.Random) -> list[Case]:
    """Damaged finished run folders given to replay, plot and report; the damaged folder must stay as it was."""
    cases = []
    hows = [
        f"{f}:{w}"
        for f in ("summary.json", "rounds.csv", "clients.csv", "events.csv", "early_exit.csv", "scenario.resolved.yaml")
        for w in ("delete", "truncate", "empty", "binary", "non-utf8", "dir", "link")
    ]
    hows += [
        f"{f}:{w}"
        for f in ("rounds.csv", "clients.csv", "events.csv", "early_exit.csv")
        for w in ("letters", "inf", "dropcol", "extracol")
    ]
    hows += [
        f"summary.json:json={k}={v}"
        for k, v in (
            ("clients", '"x"'),
            ("clients", "[1, 2]"),
            ("clients", '[{"name": 5, "cut": "x"}]'),
            ("energy_j", '"x"'),
            ("energy_j", '{"total": "x"}'),
            ("sim_time_s", '"fast"'),
            ("final_accuracy", "[1]"),
            ("exit_accuracy", '"x"'),
            ("rounds", '"x"'),
            ("scenario", "[1]"),
            ("availability", '"x"'),
            ("stopped_early", "[1]"),
        )
    ]
    plots = [
        ["plot", "tradeoff"],
        ["plot", "time-to-accuracy"],
        ["plot", "timeline"],
        ["plot", "energy"],
        ["plot", "accuracy-by-cut"],
        ["plot", "early-exit"],
        ["report"],
        ["replay"],
    ]
    for k, how in enumerate(hows):
        folder = work / "damaged" / f"d{k}"
        _damage_run(fx["run"], folder, how, rng)
        for argv in rng.sample(plots, 3):
            out = work / "outs" / f"dmg-{k}-{argv[-1]}"
            if argv[0] == "plot":
                full = [*argv, str(folder), "--out", str(out) + ".png"]
            elif argv[0] == "report":
                full = ["report", str(folder), "--out", str(out) + ".html"]
            else:
                full = ["replay", str(folder), "--out", str(out), "--set", "clients.0.link.uplink_bps=2e6"]
            cases.append(
                Case(
                    "run-folder",
                    f"{argv[0]} {argv[-1] if argv[0] == 'plot' else ''} {how}",
                    full,
                    cwd=work,
                    guard=[folder],
                )
            )
    # truncated tables: every plot kind reads the whole folder, so one kind per file stands for all; and report
    for k, how in enumerate(
        f"{f}:{w}"
        for f in ("rounds.csv", "clients.csv", "events.csv", "early_exit.csv")
        for w in ("cutrow", "shortrow")
    ):
        folder = work / "damaged" / f"t{k}"
        _damage_run(fx["run"], folder, how, rng)
        kind = rng.choice([p[1] for p in plots if p[0] == "plot"])
        for full in (
            ["plot", kind, str(folder), "--out", str(work / "outs" / f"trunc-{k}.png")],
            ["report", str(folder), "--out", str(work / "outs" / f"trunc-{k}.html")],
        ):
            cases.append(
                Case(
                    "run-folder", f"{full[0]} {kind if full[0] == 'plot' else ''} {how}", full, cwd=work, guard=[folder]
                )
            )
    # a sweep table damaged for the heatmap (`plot heatmap`, `report --sweep`)
    axes = ["--x", "clients.0.count", "--y", "capacity_bps", "--metric", "final_accuracy"]
    for k, what in enumerate(
        ("cutrow", "shortrow", "word@clients.0.count", "word@capacity_bps", "word@final_accuracy")
    ):
        folder = work / "damaged" / f"sweep{k}"
        folder.mkdir(parents=True, exist_ok=True)
        table = folder / "sweep.csv"
        shutil.copy(fx["table"], table)
        _damage_file(table, what, rng)
        for full in (
            ["plot", "heatmap", str(table), *axes, "--out", str(work / "outs" / f"heat-{k}.png")],
            ["report", str(fx["run"]), "--sweep", str(table), *axes, "--out", str(work / "outs" / f"heat-{k}.html")],
        ):
            cases.append(
                Case("run-folder", f"{full[0]} heatmap sweep.csv:{what}", full, cwd=work, guard=[table, fx["run"]])
            )
    return cases


def output_cases(work: Path, fx: dict[str, Path]) -> list[Case]:
    """Bad --out paths for every command that writes, and --overwrite aimed at folders that are not runs."""
    cases = []
    afile = work / "afile.txt"
    afile.write_text("keep me\n")
    thesis = work / "thesis"
    thesis.mkdir(exist_ok=True)
    (thesis / "chapter1.tex").write_text("keep me too\n")
    guard = [afile, thesis, fx["tiny"], fx["run"]]
    bad_outs = {
        "a file": str(afile),
        "/dev/null": "/dev/null",
        "under a file": str(afile / "x"),
        "read-only fs": "/proc/splitee-x",
        "a folder with a thesis": str(thesis),
    }
    for label, out in bad_outs.items():
        for extra in ([], ["--overwrite"], ["--resume"]):
            cases.append(
                Case(
                    "output",
                    f"run --out {label} {' '.join(extra)}",
                    ["run", str(fx["tiny"]), "--out", out, "--quiet", *extra],
                    cwd=work,
                    guard=guard,
                )
            )
        cases.append(
            Case(
                "output",
                f"replay --out {label}",
                ["replay", str(fx["run"]), "--out", out, "--overwrite"],
                cwd=work,
                guard=guard,
            )
        )
        cases.append(
            Case(
                "output",
                f"sweep --out {label}",
                ["sweep", str(fx["sweep"]), "--executor", "local", "--out", out, "--quiet"],
                cwd=work,
                guard=guard,
            )
        )
        ext = "" if label in ("/dev/null", "a folder with a thesis") else ".png"
        cases.append(
            Case(
                "output",
                f"plot --out {label}",
                ["plot", "energy", str(fx["run"]), "--out", out + ext],
                cwd=work,
                guard=guard,
            )
        )
        ext = "" if label in ("/dev/null", "a folder with a thesis") else ".html"
        cases.append(
            Case(
                "output", f"report --out {label}", ["report", str(fx["run"]), "--out", out + ext], cwd=work, guard=guard
            )
        )
        cases.append(
            Case(
                "output",
                f"calibrate --out {label}",
                [
                    "calibrate",
                    "--width",
                    "4",
                    "--image-size",
                    "8",
                    "--in-channels",
                    "1",
                    "--batch",
                    "4",
                    "--repeats",
                    "1",
                    "--warmup",
                    "0",
                    "--out",
                    out + (".yaml" if ext else ""),
                    "--force",
                ],
                cwd=work,
                guard=guard,
            )
        )
    # --overwrite at folders above or holding the inputs: the tool must refuse, whatever markers were planted
    planted = work / "planted"
    planted.mkdir(exist_ok=True)
    shutil.copy(fx["tiny"], planted / "tiny.yaml")
    (planted / ".splitee-run").write_text("{}")
    (planted / "notes.txt").write_text("keep\n")
    for label, out, cwd in (
        ("--out .", ".", planted),
        ("--out ..", "..", planted / "sub"),
        ("--out the scenario's folder", str(planted), work),
        ("--out /", "/", work),
        ("--out ~", str(Path.home()), work),
    ):
        (planted / "sub").mkdir(exist_ok=True)
        cases.append(
            Case(
                "overwrite",
                f"run {label} --overwrite (marker planted)",
                ["run", str(planted / "tiny.yaml"), "--out", out, "--overwrite", "--quiet"],
                cwd=cwd,
                guard=[planted / "tiny.yaml", planted / "notes.txt"],
            )
        )
    for name in ("..", ".", "../..", "a/b", "/tmp/x"):
        scen = work / "cases" / f"name-{len(cases)}.yaml"
        _dump(_set(TINY, ("name",), name), scen)
        cases.append(
            Case(
                "overwrite",
                f"scenario name {name!r} --overwrite",
                ["run", str(scen), "--overwrite", "--quiet"],
                cwd=work / "cases",
                guard=[scen, afile, thesis],
            )
        )
    return cases


def checkpoint_cases(work: Path, fx: dict[str, Path], rng: random.Random) -> list[Case]:
    """`--resume` with damaged, foreign and crafted checkpoints; a crafted pickle would create MARKER."""
    cases = []
    marker = work / "PWNED"
    state = fx["partial"] / "checkpoint" / "state.pt"
    good = state.read_bytes() if state.is_file() else b""
    crafted = work / "crafted.pt"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import torch, os, sys\n"
            "class E:\n"
            "    def __reduce__(self): return (os.system, ('touch ' + sys.argv[2],))\n"
            "torch.save({'format': 3, 'resolved': {}, 'timing_only': False, 'state': E()}, sys.argv[1])\n",
            str(crafted),
            str(marker),
        ],
        check=True,
        timeout=300,
    )
    legacy = work / "legacy.pt"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import torch, sys; torch.save({'resolved': {}, 'timing_only': False, 'state': {}}, sys.argv[1])",
            str(legacy),
        ],
        check=True,
        timeout=300,
    )
    damages: dict[str, Callable[[Path], None]] = {
        "crafted pickle": lambda p: p.write_bytes(crafted.read_bytes()),
        "older format": lambda p: p.write_bytes(legacy.read_bytes()),
        "empty": lambda p: p.write_bytes(b""),
        "random bytes": lambda p: p.write_bytes(bytes(rng.randrange(256) for _ in range(5000))),
        "a directory": lambda p: (p.unlink(), p.mkdir()),
        "a link to /etc/hostname": lambda p: (p.unlink(), p.symlink_to("/etc/hostname")),
        "text": lambda p: p.write_text("hello"),
    }
    for k in range(10):
        cut = rng.randrange(1, max(2, len(good)))
        damages[f"truncated at {cut}"] = lambda p, cut=cut: p.write_bytes(good[:cut])
    for k in range(6):
        pos = rng.randrange(len(good) or 1)
        damages[f"byte flipped at {pos}"] = lambda p, pos=pos: p.write_bytes(
            good[:pos] + bytes([good[pos] ^ 0xFF]) + good[pos + 1 :] if good else b"x"
        )
    for label, damage in damages.items():
        folder = work / "resumes" / f"r{len(cases)}"

        def prepare(folder: Path = folder, damage: Callable[[Path], None] = damage) -> None:
            if folder.exists():
                shutil.rmtree(folder)
            shutil.copytree(fx["partial"], folder, symlinks=True)
            damage(folder / "checkpoint" / "state.pt")

        cases.append(
            Case(
                "checkpoint",
                f"run --resume, checkpoint {label}",
                ["run", str(fx["three"]), "--out", str(folder), "--resume", "--quiet"],
                cwd=work,
                marker=marker,
                prepare=prepare,
                guard=[fx["three"]],
            )
        )
    # resume a run of another scenario (finished and unfinished)
    other = _dump(_set(TINY, ("seed",), 99), work / "other.yaml")
    for label, src in (("finished", fx["run"]), ("unfinished", fx["partial"])):
        folder = work / "resumes" / f"other-{label}"

        def prepare(folder: Path = folder, src: Path = src) -> None:
            if folder.exists():
                shutil.rmtree(folder)
            shutil.copytree(src, folder)

        cases.append(
            Case(
                "checkpoint",
                f"run --resume of another scenario's {label} run",
                ["run", str(other), "--out", str(folder), "--resume", "--quiet"],
                cwd=work,
                prepare=prepare,
            )
        )
    return cases


def sweep_cases(work: Path, fx: dict[str, Path]) -> list[Case]:
    cases = []
    bomb = "\n".join(
        ['x_a: &a ["l","l","l","l","l","l","l","l","l"]']
        + [f"x_{c}: &{c} [{','.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    )
    variants = {
        "alias bomb grid value": bomb + "\nname: b\nbase: tiny.yaml\ngrid: {strategy.name: [*i]}\n",
        "alias bomb grid list": bomb + "\nname: b\nbase: tiny.yaml\ngrid: {seed: *i}\n",
        "huge seed": "name: b\nbase: tiny.yaml\nseeds: [" + "9" * 30 + "]\n",
        "name ..": "name: '..'\nbase: tiny.yaml\n",
        "missing base": "name: b\nbase: nothere.yaml\n",
        "base is the sweep": "name: b\nbase: sweep-self.yaml\n",
        "grid not a list": "name: b\nbase: tiny.yaml\ngrid: {seed: 3}\n",
        "inf grid value": "name: b\nbase: tiny.yaml\ngrid: {clients.0.link.latency_s: [.inf]}\n",
        "non-UTF-8": "name: b\nbase: tiny.yaml\n# \udcff\n",
        "deep": "name: b\nbase: tiny.yaml\ngrid: {seed: " + "[" * 10000 + "]" * 10000 + "}\n",
        "binary base": "name: b\nbase: /bin/sh\n",
    }
    for label, text in variants.items():
        path = work / ("sweep-self.yaml" if "sweep-self" in text else f"sweep-{len(cases)}.yaml")
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        cases.append(
            Case(
                "sweep",
                f"sweep {label}",
                ["sweep", str(path), "--executor", "local", "--out", str(work / "outs" / f"sw{len(cases)}"), "--quiet"],
                cwd=work,
            )
        )
    return cases


def calibrate_cases(work: Path) -> list[Case]:
    base = [
        "calibrate",
        "--width",
        "4",
        "--image-size",
        "8",
        "--in-channels",
        "1",
        "--batch",
        "4",
        "--repeats",
        "1",
        "--warmup",
        "0",
    ]
    cases = []
    for flag, value in (
        ("--width", "0"),
        ("--width", "200000"),
        ("--width", "x"),
        ("--batch", "0"),
        ("--batch", "10000000"),
        ("--image-size", "1"),
        ("--image-size", "100000"),
        ("--in-channels", "0"),
        ("--repeats", "-1"),
        ("--warmup", "-5"),
        ("--compute-w", "inf"),
        ("--compute-w", "nan"),
        ("--idle-w", "-1"),
        ("--memory-bytes", "-1"),
        ("--device", "cuda"),
        ("--device", "tpu"),
        ("--num-classes", "0"),
    ):
        argv = list(base)
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
        cases.append(Case("calibrate", f"calibrate {flag} {value}", argv, cwd=work))
    return cases


def concurrency_cases(work: Path, fx: dict[str, Path]) -> list[Case]:
    """Two writers at once on one folder: the second must be refused (the case runs both)."""
    cases = []
    for k in range(3):
        out = work / "outs" / f"twice-{k}"
        script = (
            f"( {' '.join(_splitee_cmd())} run {fx['tiny']} --out {out} --quiet >/dev/null 2>{out}.a & "
            f"{' '.join(_splitee_cmd())} run {fx['tiny']} --out {out} --quiet --set seed=7 >/dev/null 2>{out}.b;"
            f" wait ); grep -h '^error' {out}.a {out}.b >&2; "
            f"python3 -c \"import json,yaml,sys; s=json.load(open('{out}/summary.json')); "
            f"r=yaml.safe_load(open('{out}/scenario.resolved.yaml')); sys.exit(0 if s['seed']==r['seed'] else 3)\""
            f" || exit 3; exit 2"
        )
        cases.append(Case("concurrency", f"two runs on one --out ({k})", ["__shell__", script], cwd=work))
    return cases


def all_cases(work: Path, fx: dict[str, Path], seed: int) -> list[Case]:
    rng = random.Random(seed)
    return [
        *scenario_value_cases(work, fx, rng),
        *scenario_file_cases(work, fx, rng),
        *profile_cases(work, fx, rng),
        *run_folder_cases(work, fx, rng),
        *output_cases(work, fx),
        *checkpoint_cases(work, fx, rng),
        *sweep_cases(work, fx),
        *calibrate_cases(work),
        *concurrency_cases(work, fx),
    ]


def _run_any(case: Case, timeout: float, splitee: list[str]) -> Outcome:
    if case.argv and case.argv[0] == "__shell__":
        return run_case(
            Case(
                case.family, case.name, ["-c", case.argv[1]], case.cwd, case.guard, case.marker, case.env, case.prepare
            ),
            timeout,
            ["bash"],
        )
    if case.argv and case.argv[0] == sys.executable:
        return run_case(
            Case(case.family, case.name, case.argv[1:], case.cwd, case.guard, case.marker, case.env, case.prepare),
            timeout,
            [sys.executable],
        )
    return run_case(case, timeout, splitee)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, help="run a sample of this many cases (stratified by family)")
    ap.add_argument("--jobs", type=int, default=2, help="cases at once (default 2)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case (default 60)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--family", action="append", help="only these families")
    ap.add_argument("--report", type=Path, help="write every outcome as JSON lines here")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)

    splitee = _splitee_cmd()
    work = Path(tempfile.mkdtemp(prefix="splitee-mutate-"))
    (work / "cases").mkdir()
    (work / "outs").mkdir()
    try:
        t0 = time.monotonic()
        fx = build_fixtures(work, splitee)
        cases = all_cases(work, fx, args.seed)
        if args.family:
            cases = [c for c in cases if c.family in args.family]
        if args.limit and args.limit < len(cases):
            rng = random.Random(args.seed)
            fams: dict[str, list[Case]] = {}
            for c in cases:
                fams.setdefault(c.family, []).append(c)
            share = max(1, args.limit // len(fams))
            cases = [c for group in fams.values() for c in rng.sample(group, min(share, len(group)))]
        print(
            f"{len(cases)} cases (fixtures {time.monotonic() - t0:.0f} s), {args.jobs} at a time, "
            f"{args.timeout:.0f} s each",
            flush=True,
        )
        # cases sharing one prepared location (profile copies) run one at a time
        serial = [c for c in cases if c.family == "profile"]
        parallel = [c for c in cases if c.family != "profile"]
        outcomes: list[Outcome] = []
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for o in pool.map(lambda c: _run_any(c, args.timeout, splitee), parallel):
                outcomes.append(o)
                if o.kind in BAD_CLASSES:
                    print(f"  {o.kind.upper()}: [{o.case.family}] {o.case.name}: rc={o.rc} {o.detail}", flush=True)
        for c in serial:
            o = _run_any(c, args.timeout, splitee)
            outcomes.append(o)
            if o.kind in BAD_CLASSES:
                print(f"  {o.kind.upper()}: [{o.case.family}] {o.case.name}: rc={o.rc} {o.detail}", flush=True)
        if args.report:
            with args.report.open("w") as fh:
                for o in outcomes:
                    fh.write(
                        json.dumps(
                            {
                                "family": o.case.family,
                                "case": o.case.name,
                                "kind": o.kind,
                                "rc": o.rc,
                                "seconds": round(o.seconds, 2),
                                "stderr_tail": o.detail,
                            }
                        )
                        + "\n"
                    )
        kinds = ("refused", "ok", *BAD_CLASSES)
        families = sorted({o.case.family for o in outcomes})
        print(f"\n{'family':<16}" + "".join(f"{k:>10}" for k in kinds))
        for fam in families:
            row = [o for o in outcomes if o.case.family == fam]
            print(f"{fam:<16}" + "".join(f"{sum(o.kind == k for o in row):>10}" for k in kinds))
        print(f"{'total':<16}" + "".join(f"{sum(o.kind == k for o in outcomes):>10}" for k in kinds))
        print(f"\n{len(outcomes)} cases in {time.monotonic() - t0:.0f} s")
        bad = sum(o.kind in BAD_CLASSES for o in outcomes)
        return 1 if bad else 0
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
