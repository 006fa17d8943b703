"""A refusal is its one line: nothing on stdout before it, one `error:` line on stderr, exit status 2."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulator.cli import main
from tests.scenarios import scenario, write_scenario

ROOT = Path(__file__).resolve().parents[1]

SCENARIO = scenario(
    name="refused",
    seed=5,
    dataset__synthetic={"train_size": 64, "test_size": 16, "image_size": 12},
    training__rounds=1,
    training__local_steps=1,
    eval={"batch_size": 16, "thresholds": [0.5]},
    output__checkpoint_every=1,
    clients=[
        {"device": "rpi4", "link": "wifi4", "cut": 1, "count": 2},
        {"device": "jetson_nano", "link": "wifi6", "cut": 3},
    ],
)


def _write(folder: Path, name: str = "s.yaml", **changes: Any) -> Path:
    return write_scenario(folder, SCENARIO, file=name, **changes)


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the CLI; it must refuse with nothing on stdout and exactly one `error:` line on stderr."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    assert (status, out) == (2, ""), (status, out, err)
    assert err.endswith("\n") and err.count("\n") == 1 and err.startswith("error: "), err
    return err.strip()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("finished")
    assert main(["run", str(_write(tmp)), "--out", str(tmp / "run"), "--quiet", "--no-report"]) == 0
    return tmp / "run"


# --- `splitee run`: every check runs before the cut list is printed ------------------------------------------------


def _fashion_mnist_root(root: Path) -> Path:
    """Fashion-MNIST files that are all present (validate passes) but whose training images are cut short: the
    header promises 10 images of 28x28 = 7 840 bytes, the file holds 100."""
    root.mkdir()
    (root / "train-images-idx3-ubyte").write_bytes(
        b"".join(v.to_bytes(4, "big") for v in (2051, 10, 28, 28)) + b"\0" * 100
    )
    for name, head in (
        ("train-labels-idx1-ubyte", [2049, 0]),
        ("t10k-images-idx3-ubyte", [2051, 0, 28, 28]),
        ("t10k-labels-idx1-ubyte", [2049, 0]),
    ):
        (root / name).write_bytes(b"".join(v.to_bytes(4, "big") for v in head))
    return root


@pytest.mark.parametrize(
    "case",
    [
        "batch of one",
        "dataset file",
        "out is a file",
        "out is not a run folder",
        "memory",
        "timing-only strategy",
        "resume another scenario",
        "resume a damaged summary",
        "resume a damaged checkpoint",
    ],
)
def test_run_refuses_before_printing_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], finished_run: Path, case: str
) -> None:
    path, out, extra = _write(tmp_path), tmp_path / "run", ["--quiet"]
    says = {
        "batch of one": "BatchNorm",
        "dataset file": "truncated or padded",
        "out is a file": "",
        "out is not a run folder": "already holds files",
        "memory": "memory",
        "timing-only strategy": "--timing-only",
        "resume another scenario": "different scenario",
        "resume a damaged summary": "summary.json is damaged",
        "resume a damaged checkpoint": "state.pt",
    }[case]
    if case == "batch of one":  # 8x8 images: a 1x1 deepest feature map; 3 samples over 2 clients leave one 1
        path = _write(
            tmp_path,
            dataset={"name": "synthetic", "synthetic": {"train_size": 3, "test_size": 4, "image_size": 8}},
            clients=[{"device": "rpi4", "link": "wifi4", "cut": 2, "count": 2}],
        )
    elif case == "dataset file":
        root = _fashion_mnist_root(tmp_path / "fm")
        path = _write(tmp_path, dataset={"name": "fashion_mnist", "root": str(root), "download": False})
    elif case == "out is a file":
        out.write_text("keep")
    elif case == "out is not a run folder":
        out.mkdir()
        (out / "thesis.tex").write_text("keep")
    elif case == "memory":  # 10 million 3x512x512 images: about 30 TiB as fp32
        path = _write(
            tmp_path,
            dataset={
                "name": "synthetic",
                "synthetic": {"train_size": 10_000_000, "test_size": 10, "image_size": 512, "in_channels": 3},
            },
        )
    elif case == "timing-only strategy":
        path, extra = _write(tmp_path, strategy={"name": "fedavg"}), ["--quiet", "--timing-only"]
    else:
        shutil.copytree(finished_run, out)
        extra = ["--quiet", "--resume"]
        if case == "resume another scenario":
            extra += ["--set", "seed=9"]
        elif case == "resume a damaged summary":
            (out / "summary.json").write_text("{cut")
        else:  # a run killed before its summary, its checkpoint damaged
            (out / "summary.json").unlink()
            (out / "checkpoint").mkdir()
            (out / "checkpoint" / "state.pt").write_bytes(b"\x80\x02 not a checkpoint")
    before = sorted(p.name for p in out.iterdir()) if out.is_dir() else None
    line = _refused(capsys, "run", str(path), "--out", str(out), *extra)
    assert says in line
    assert (sorted(p.name for p in out.iterdir()) if out.is_dir() else None) == before  # nothing written


def test_run_prints_its_cuts_once_the_checks_have_passed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(_write(tmp_path)), "--out", str(tmp_path / "run"), "--quiet", "--no-report"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cuts:\n") and "rpi4-0" in out.splitlines()[1]


# --- `splitee devices`: both tables are built before the first line ------------------------------------------------


def test_devices_refuses_a_broken_link_profile_before_printing(tmp_path: Path) -> None:
    for name in ("simulator", "analysis", "device_profiles"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    link = sorted((tmp_path / "device_profiles" / "links").glob("*.yaml"))[-1]  # the last table printed
    link.write_bytes(link.read_bytes() + b"\nuplink_bps: .nan\n")
    done = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "devices"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert (done.returncode, done.stdout) == (2, ""), done.stdout[:300]
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and link.name in done.stderr


# --- `splitee plot` and `report`: a table cut short is refused, naming the file and its last row ------------------


def _cut(file: Path, how: str) -> int:
    """Damage the last row of `file`; returns its number (data rows below the header, counted from the text)."""
    text = file.read_text()
    rows = text.count("\n") - 1
    if how == "cut inside":  # the last 3 characters gone: a number loses digits, the newline is lost
        file.write_text(text[:-4])
    else:  # the last two cells gone, the newline kept
        lines = text.splitlines()
        lines[-1] = lines[-1].rsplit(",", 2)[0]
        file.write_text("\n".join(lines) + "\n")
    return rows


@pytest.mark.parametrize("name", ["rounds.csv", "clients.csv", "events.csv", "early_exit.csv"])
@pytest.mark.parametrize("how", ["cut inside", "short row"])
@pytest.mark.parametrize("command", ["plot", "report"])
def test_a_truncated_table_is_refused_naming_its_last_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], finished_run: Path, name: str, how: str, command: str
) -> None:
    folder = tmp_path / "run"
    shutil.copytree(finished_run, folder)
    argv = (
        ["plot", "tradeoff", str(folder), "--out", str(tmp_path / "f.png")]
        if command == "plot"
        else ["report", str(folder), "--out", str(tmp_path / "r.html")]
    )
    assert main(argv) == 0  # whole, it draws
    capsys.readouterr()
    row = _cut(folder / name, how)
    line = _refused(capsys, *argv)
    assert line.startswith(f"error: {folder / name}: the last row (row {row} of the table) is cut short")
    assert ("does not end with a newline" if how == "cut inside" else "fields") in line


@pytest.mark.parametrize("name", ["rounds.csv", "clients.csv", "early_exit.csv"])  # the tables a replay reads
def test_replay_refuses_a_truncated_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], finished_run: Path, name: str
) -> None:
    folder = tmp_path / "run"
    shutil.copytree(finished_run, folder)
    row = _cut(folder / name, "cut inside")
    line = _refused(capsys, "replay", str(folder), "--out", str(tmp_path / "replay"))
    assert line.startswith(f"error: {folder / name}: the last row (row {row} of the table) is cut short")
    assert not (tmp_path / "replay").exists()


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("final_accuracy", [1], "final_accuracy is not a number"),
        ("energy_j", {"total": "x"}, "energy_j.total is not a number"),
        ("exit_accuracy", {"rpi4-0": "high"}, "exit_accuracy is not a mapping of client names to numbers"),
    ],
)
def test_replay_refuses_a_summary_field_of_the_wrong_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], finished_run: Path, key: str, value: Any, says: str
) -> None:
    import json

    folder = tmp_path / "run"
    shutil.copytree(finished_run, folder)
    summary = json.loads((folder / "summary.json").read_text())
    summary[key] = value
    (folder / "summary.json").write_text(json.dumps(summary))
    line = _refused(capsys, "replay", str(folder), "--out", str(tmp_path / "replay"))
    assert line == f"error: {folder / 'summary.json'}: not a summary.json of a run (damaged or foreign): {says}"


_SWEEP = (
    "point,status,bandwidth_bps,share,seed,final_accuracy\n"
    "a,ok,2e5,0.3,0,0.5\nb,ok,1e6,0.3,0,0.7\nc,ok,2e5,0.7,0,0.4\nd,ok,1e6,0.7,0,0.8\n"
)


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda t: t.replace("b,ok,1e6", "b,ok,1e6x"), "column 'bandwidth_bps' row 2 holds '1e6x', not a number"),
        (lambda t: t.replace("0,0.4", "0,n/a"), "column 'final_accuracy' is not numeric: row 3 holds 'n/a'"),
        (lambda t: t[:-2], "the last row (row 4 of the table) is cut short"),
    ],
)
@pytest.mark.parametrize("command", ["plot", "report"])
def test_a_damaged_sweep_table_is_refused_naming_the_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], finished_run: Path, damage: Any, says: str, command: str
) -> None:
    table = tmp_path / "sweep.csv"
    axes = ["--x", "bandwidth_bps", "--y", "share", "--metric", "final_accuracy"]
    argv = (
        ["plot", "heatmap", str(table), *axes, "--out", str(tmp_path / "h.png")]
        if command == "plot"
        else ["report", str(finished_run), "--sweep", str(table), *axes, "--out", str(tmp_path / "r.html")]
    )
    table.write_text(_SWEEP)
    assert main(argv) == 0
    capsys.readouterr()
    table.write_text(damage(_SWEEP))
    assert _refused(capsys, *argv).startswith(f"error: {table}: {says}")


def test_a_heatmap_axis_of_names_is_drawn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a swept strategy is an axis of names, not a damaged axis of numbers
    table = tmp_path / "sweep.csv"
    table.write_text(_SWEEP.replace("2e5", "averaging").replace("1e6", "sequential"))
    assert (
        main(
            [
                "plot",
                "heatmap",
                str(table),
                "--x",
                "bandwidth_bps",
                "--y",
                "share",
                "--metric",
                "final_accuracy",
                "--out",
                str(tmp_path / "h.png"),
            ]
        )
        == 0
    )
