"""Bad input, crashes and concurrent use: one line and exit status 2, nothing lost, nothing from a file executed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from simulator.cli import main
from simulator.errors import InputError
from simulator.output.checkpoint_io import MAGIC, dumps, load_file
from simulator.output.fsio import atomic_write
from simulator.output.run_folder import LOCK, MARKER, RunFolder
from tests.scenarios import scenario, write_scenario

SCENARIO = scenario(
    name="hard",
    seed=5,
    dataset__synthetic={"train_size": 64, "test_size": 16, "image_size": 12},
    training__local_steps=1,
    eval={"batch_size": 16, "thresholds": [0.5]},
    output__checkpoint_every=1,
    clients=[
        {"device": "rpi4", "link": "wifi4", "cut": 1, "count": 2},
        {"device": "jetson_nano", "link": "wifi6", "cut": 3},
    ],
)


def _write(tmp_path: Path, fname: str = "s.yaml", data: dict[str, Any] | None = None, **changes: Any) -> Path:
    return write_scenario(tmp_path, data or SCENARIO, file=fname, **changes)


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _splitee() -> list[str]:
    beside = Path(sys.executable).with_name("splitee")
    return [str(beside)] if beside.is_file() else [sys.executable, "-m", "simulator.cli"]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- bad numbers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, says",
    [
        ("clients__0__link", {"base": "wifi4", "latency_s": float("inf")}, "finite"),
        ("clients__0__link", {"base": "wifi4", "uplink_bps": 1e-310}, "1..1e+13"),
        ("clients__0__link", {"base": "wifi4", "loss_rate": 0.9999999}, "0..0.99"),
        ("clients__0__device", {"base": "rpi4", "idle_w": float("inf")}, "finite"),
        ("clients__0__device", {"base": "rpi4", "flops_per_s": float("inf")}, "finite"),
        ("clients__0__device", {"base": "rpi4", "idle_w": 50.0}, "exceeds compute_w"),
        ("training__optimizer", {"lr": float("inf")}, "finite"),
        ("training__optimizer", {"lr": float("nan")}, "got nan"),
        ("training", {"rounds": 2, "local_epochs": float("inf")}, "finite"),
        ("seed", 2**64, "0..18446744073709551615"),
        ("seed", 10**4000, "an integer of about 4001 digits"),
        ("model", {"width": 200_000}, "1..512"),
        ("dataset__synthetic", {"image_size": 100_000}, "4..512"),
        ("network", {"media": {"ap": {"capacity_bps": float("inf")}}}, "finite"),
    ],
)
def test_bad_numbers_are_refused_with_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: Any, says: str
) -> None:
    sys.set_int_max_str_digits(0)  # to write the 4 001-digit seed into the file
    try:
        path = _write(tmp_path, **{key: value})
    finally:
        sys.set_int_max_str_digits(4300)
    assert main(["validate", str(path)]) == 2
    line = _one_error(capsys)
    assert str(path) in line and says in line and len(line) < 400, line


def test_an_error_never_echoes_unbounded_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path)
    for override in (
        "strategy.name=" + "x" * 50_000,
        "clients.0.device=" + "y" * 50_000,
        "z" * 50_000 + "=1",
        "seed='" + "w" * 50_000 + "'",
    ):
        assert main(["validate", str(path), "--set", override]) == 2
        line = _one_error(capsys)
        assert len(line) < 400 and "x" * 100 not in line and "y" * 100 not in line and "w" * 100 not in line


def test_a_trace_error_does_not_echo_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("root:x:0:0:top-secret-line\n")
    path = _write(tmp_path, availability={"model": "trace", "trace": str(secret)})
    assert main(["validate", str(path)]) == 2
    assert "top-secret" not in _one_error(capsys)


# --- sizes ---------------------------------------------------------------------------------------------------------


def test_sizes_that_cannot_be_allocated_are_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 10 million 3x512x512 synthetic images: about 30 TiB as fp32, refused from the schema's numbers alone
    path = _write(
        tmp_path, dataset__synthetic={"train_size": 10_000_000, "test_size": 10, "image_size": 512, "in_channels": 3}
    )
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    assert "memory" in _one_error(capsys) and not out.exists()


def test_a_batch_of_one_never_reaches_a_batchnorm_layer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 8x8 images: the deepest feature map is 1x1; with 3 samples over 2 clients one client holds a single sample
    path = _write(
        tmp_path,
        dataset__synthetic={"train_size": 3, "test_size": 4, "image_size": 8},
        clients=[{"device": "rpi4", "link": "wifi4", "cut": 2, "count": 2}],
    )
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    assert "BatchNorm" in _one_error(capsys) and not out.exists()


# --- YAML bombs, nesting, non-UTF-8 and truncated files -------------------------------------------------------------

_BOMB = "\n".join(
    ['x_a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"x_{c}: &{c} [{','.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
)


@pytest.mark.parametrize("where", ["strategy.name", "compute", "sweep grid"])
def test_alias_bombs_are_refused_within_a_time_limit(tmp_path: Path, where: str) -> None:
    body = yaml.safe_dump(SCENARIO, sort_keys=False)
    if where == "strategy.name":
        text, argv = _BOMB + "\n" + body.replace("clients:", "strategy: {name: *i}\nclients:", 1), ["validate"]
    elif where == "compute":
        text, argv = _BOMB + "\n" + body + "compute: *i\n", ["validate"]
    else:
        _write(tmp_path, "base.yaml")
        text, argv = _BOMB + "\nname: b\nbase: base.yaml\ngrid: {strategy.name: [*i]}\n", ["sweep"]
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    t0 = time.monotonic()
    done = subprocess.run(
        [*_splitee(), *argv, str(path), *(["--executor", "local"] if argv == ["sweep"] else [])],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert time.monotonic() - t0 < 120
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1 and "alias" in err[0], done.stderr


def test_deep_nesting_is_refused_not_crashed(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("name: x\nclients: " + "[" * 100_000 + "]" * 100_000 + "\n")
    done = subprocess.run([*_splitee(), "validate", str(path)], capture_output=True, text=True, timeout=120)
    # Our own limit (64 levels) or, with PyYAML >= 6.0.4, libyaml's (1 000 levels, met while scanning ahead):
    # either way one line and exit status 2, never a crash.
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: "), done.stderr
    assert "nested more than 64 levels" in done.stderr or "exceeded maximum nesting depth" in done.stderr


def test_a_value_that_contains_itself_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path)
    for value in ("&a [*a]", "&a {x: [1, *a]}"):
        assert main(["validate", str(path), "--set", f"clients.0.device={value}"]) == 2
        assert "contains it" in _one_error(capsys)
    path.write_text(path.read_text() + "x: &b\n  y: *b\n")
    assert main(["validate", str(path)]) == 2
    assert "contains it" in _one_error(capsys)


@pytest.mark.parametrize("damage", ["non-utf8", "truncated", "empty", "binary"])
def test_damaged_scenario_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str) -> None:
    path = _write(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(
        {
            "non-utf8": raw[:30] + b"\xff\xfe" + raw[30:],
            "truncated": raw[: len(raw) // 3],
            "empty": b"",
            "binary": bytes(range(256)) * 4,
        }[damage]
    )
    assert main(["validate", str(path)]) == 2
    assert str(path) in _one_error(capsys)


def test_a_non_utf8_profile_file_is_one_line(tmp_path: Path) -> None:
    from simulator.config.profiles import DeviceProfile, load_profile_dir

    (tmp_path / "bad.yaml").write_bytes(b"flops_per_s: 1.0e9\nsource: caf\xe9\n")
    with pytest.raises(InputError) as err:
        load_profile_dir(tmp_path, DeviceProfile)
    assert "bad.yaml" in err.value.one_line() and "UTF-8" in err.value.one_line()


def test_malformed_dataset_files_are_one_line(tmp_path: Path) -> None:
    import gzip
    import pickle

    from simulator.learning.data.formats import _load_fashion_mnist, _load_stl10, _unpickle

    # IDX: a header promising more images than the file holds; then images of the wrong size
    (tmp_path / "train-images-idx3-ubyte").write_bytes(
        (2051).to_bytes(4, "big") + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 100
    )
    for name, head in (
        ("train-labels-idx1-ubyte", [2049, 0]),
        ("t10k-images-idx3-ubyte", [2051, 0, 28, 28]),
        ("t10k-labels-idx1-ubyte", [2049, 0]),
    ):  # valid, empty
        (tmp_path / name).write_bytes(b"".join(v.to_bytes(4, "big") for v in head))
    with pytest.raises(InputError, match="truncated or padded"):
        _load_fashion_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(
        (2051).to_bytes(4, "big") + (0).to_bytes(4, "big") + (32).to_bytes(4, "big") * 2
    )
    with pytest.raises(InputError, match="28x28"):
        _load_fashion_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"x" * 100)[:20])
    with pytest.raises(InputError, match="IDX"):
        _load_fashion_mnist(tmp_path)
    # CIFAR: truncated, crafted (would run code), labels that are not integers
    good = pickle.dumps({b"data": __import__("numpy").zeros((2, 3072), "uint8"), b"labels": [0, 1]})
    for raw, says in (
        (good[: len(good) // 2], "truncated or damaged"),
        (pickle.dumps(os.system), "objects the CIFAR files never contain"),
        (pickle.dumps({b"data": 1, b"labels": 2}), None),
    ):
        (tmp_path / "b").write_bytes(raw)
        with pytest.raises(InputError) as err:
            from simulator.learning.data.formats import _cifar_part

            _cifar_part(tmp_path / "b", "labels", 10) if says is None else _unpickle(tmp_path / "b")
        assert "b" in err.value.one_line() and (says is None or says in err.value.one_line())
    # STL-10: not a whole number of images
    (tmp_path / "stl10_binary").mkdir()
    (tmp_path / "stl10_binary" / "train_X.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(InputError, match="whole number of 3x96x96 images"):
        _load_stl10(tmp_path)


# --- concurrent writers --------------------------------------------------------------------------------------------

_HOLD = """
import sys, time
from pathlib import Path
from simulator.output.run_folder import RunFolder
RunFolder(Path(sys.argv[1])).claim(existing="refuse")
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_writer_is_refused_and_a_killed_writers_lock_is_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, training__rounds=1)
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for extra in ([], ["--resume"], ["--overwrite"]):
            assert main(["run", str(path), "--out", str(out), "--quiet", *extra]) == 2
            assert f"another splitee process (process {holder.pid})" in _one_error(capsys)
        assert not (out / "summary.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # as a crash would: the lock file stays behind
        holder.wait(timeout=60)
    assert (out / LOCK).exists()
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert (out / "summary.json").is_file() and not (out / LOCK).exists()


def test_two_runs_started_together_never_mix_their_files(tmp_path: Path) -> None:
    path = _write(tmp_path, training__rounds=1)
    out = tmp_path / "run"
    procs = [
        subprocess.Popen(
            [*_splitee(), "run", str(path), "--out", str(out), "--quiet", "--set", f"seed={s}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in (1, 2)
    ]
    results = [(p.wait(timeout=600), p.stderr.read() if p.stderr else "") for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    refused = next(err for rc, err in results if rc == 2).strip().splitlines()
    assert len(refused) == 1 and ("another splitee process" in refused[0] or "already holds a run" in refused[0])
    summary = yaml.safe_load((out / "summary.json").read_text())
    resolved = yaml.safe_load((out / "scenario.resolved.yaml").read_text())
    assert summary["seed"] == resolved["seed"]


# --- overwrite targets ---------------------------------------------------------------------------------------------


def test_overwrite_replaces_only_folders_this_tool_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, training__rounds=1)
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("years of work")
    assert main(["run", str(path), "--out", str(thesis), "--overwrite", "--quiet"]) == 2
    assert "not a run folder this tool wrote" in _one_error(capsys)
    assert (thesis / "chapter1.tex").read_text() == "years of work"

    # a planted marker does not make the working directory, its parent or the scenario's folder deletable
    (tmp_path / MARKER).write_text("{}")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / MARKER).write_text("{}")
    for cwd, out in ((tmp_path, "."), (sub, ".."), (sub, str(tmp_path)), (sub, ".")):
        monkeypatch.chdir(cwd)
        (sub / "keep.txt").write_text("keep")
        assert main(["run", str(path), "--out", out, "--overwrite", "--quiet"]) == 2
        assert "--overwrite refused" in _one_error(capsys)
        assert path.is_file() and (thesis / "chapter1.tex").is_file() and (sub / "keep.txt").is_file()

    # a run folder of ours is replaced
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "mine"
    assert main(["run", str(path), "--out", str(run), "--quiet"]) == 0
    (run / "stale.txt").write_text("from before")
    assert main(["run", str(path), "--out", str(run), "--overwrite", "--quiet"]) == 0
    assert not (run / "stale.txt").exists() and (run / "summary.json").is_file()


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../up", ""])
def test_a_scenario_name_is_a_plain_file_name(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    path = _write(tmp_path, name=name)
    assert main(["validate", str(path)]) == 2
    assert "name" in _one_error(capsys)


@pytest.mark.parametrize("out", ["file", "/dev/null", "under-file", "/proc/splitee-nowhere"])
def test_bad_output_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str], out: str) -> None:
    path = _write(tmp_path, training__rounds=1)
    afile = tmp_path / "afile"
    afile.write_text("keep")
    target = {"file": str(afile), "under-file": str(afile / "x")}.get(out, out)
    assert main(["run", str(path), "--out", target, "--quiet"]) == 2
    _one_error(capsys)
    assert afile.read_text() == "keep"


# --- checkpoints ---------------------------------------------------------------------------------------------------


def _partial_run(tmp_path: Path) -> tuple[Path, Path]:
    """A folder as a run killed after its first checkpoint leaves it (2 rounds, stopped after round 1)."""
    from simulator.commands.runner import _save_checkpoint
    from simulator.config.scenario import load_scenario
    from simulator.engine.simulation import Simulation
    from simulator.output.results import write_resolved

    path = _write(tmp_path)
    rs = load_scenario(path)
    out = tmp_path / "partial"
    with RunFolder(out).claim(existing="refuse"):
        sim = Simulation(rs)
        sim.records.append(sim.run_round())
        write_resolved(out, rs)
        _save_checkpoint(out, sim, rs.to_dict())
    return path, out


def test_a_crafted_checkpoint_never_runs_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, out = _partial_run(tmp_path)
    marker = tmp_path / "PWNED"
    state = out / "checkpoint" / "state.pt"

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    torch.save({"format": 4, "resolved": {}, "timing_only": False, "state": Evil()}, state)
    assert main(["run", str(path), "--out", str(out), "--resume", "--quiet"]) == 2
    line = _one_error(capsys)
    assert str(state) in line and not marker.exists()
    # the same payload behind this simulator's header, its digest right
    import io

    buf = io.BytesIO()
    torch.save({"format": 4, "resolved": {}, "timing_only": False, "state": Evil()}, buf)
    import hashlib

    state.write_bytes(MAGIC + hashlib.sha256(buf.getvalue()).hexdigest().encode() + b"\n" + buf.getvalue())
    assert main(["run", str(path), "--out", str(out), "--resume", "--quiet"]) == 2
    assert str(state) in _one_error(capsys) and not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "flipped", "empty", "foreign"])
def test_damaged_checkpoints_are_refused_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    path, out = _partial_run(tmp_path)
    state = out / "checkpoint" / "state.pt"
    raw = state.read_bytes()
    mid = len(raw) // 2
    state.write_bytes(
        {
            "truncated": raw[:mid],
            "flipped": raw[:mid] + bytes([raw[mid] ^ 1]) + raw[mid + 1 :],
            "empty": b"",
            "foreign": b"PK\x03\x04" + b"\0" * 200,
        }[damage]
    )
    assert main(["run", str(path), "--out", str(out), "--resume", "--quiet"]) == 2
    assert str(state) in _one_error(capsys) and not (out / "summary.json").exists()


def test_checkpoint_round_trip_keeps_records_and_arrays(tmp_path: Path) -> None:
    import numpy as np

    from simulator.engine.simulation import RoundRecord

    rec = RoundRecord(1, 0.0, 2.5, 0.1, [0, 1], {0: 0.5}, {1: 0.25}, status={0: "ok"})
    data = {"records": [rec], "z": np.arange(6.0).reshape(2, 3), "big": 2**100, "t": torch.ones(3)}
    (tmp_path / "c.pt").write_bytes(dumps(data))
    back = load_file(tmp_path / "c.pt")
    assert back["records"] == [rec] and back["big"] == 2**100 and torch.equal(back["t"], torch.ones(3))
    assert np.array_equal(back["z"], data["z"]) and back["z"].dtype == np.float64


def test_resume_refuses_a_run_of_another_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, training__rounds=1)
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    before = _tree(out)
    assert main(["run", str(path), "--out", str(out), "--resume", "--quiet", "--set", "seed=9"]) == 2
    assert "different scenario" in _one_error(capsys) and _tree(out) == before
    assert main(["run", str(path), "--out", str(out), "--resume", "--quiet"]) == 0  # the same one: finished
    assert _tree(out) == before


# --- damaged run folders for replay, plot and report ---------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("finished")
    path = _write(tmp, training__rounds=1)
    assert main(["run", str(path), "--out", str(tmp / "run"), "--quiet"]) == 0
    return tmp / "run"


@pytest.mark.parametrize(
    "damage",
    [
        ("summary.json", b"{not json"),
        ("summary.json", b'{"clients": "x"}'),
        ("summary.json", b'{"clients": [], "sim_time_s": "fast"}'),
        ("summary.json", b"\xff\xfe"),
        ("rounds.csv", b"round,sim_time_s,final_accuracy\n1,abc,0.5\n"),
        ("rounds.csv", b"round\n1\n"),
        ("clients.csv", b"\xff\xfe\x00"),
        ("events.csv", b"t_start,t_end\n1,2\n"),
        ("early_exit.csv", b"client,threshold,accuracy,exit_rate,latency_s\na,x,y,z,w\n"),
        ("scenario.resolved.yaml", b"name: [unclosed"),
    ],
)
@pytest.mark.parametrize("command", ["replay", "plot", "report"])
def test_damaged_run_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], finished_run: Path, damage: tuple[str, bytes], command: str
) -> None:
    import shutil

    folder = tmp_path / "damaged"
    shutil.copytree(finished_run, folder)
    (folder / damage[0]).write_bytes(damage[1])
    before = _tree(folder)
    argv = {
        "replay": ["replay", str(folder), "--out", str(tmp_path / "r")],
        "plot": [
            "plot",
            {"rounds.csv": "time-to-accuracy", "events.csv": "timeline", "early_exit.csv": "early-exit"}.get(
                damage[0], "tradeoff"
            ),
            str(folder),
            "--out",
            str(tmp_path / "f.png"),
        ],
        "report": ["report", str(folder), "--out", str(tmp_path / "r.html")],
    }[command]
    status = main(argv)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    # a figure or report that does not need the damaged file may still be made; anything else is one line
    assert status == 0 and not err or status == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert _tree(folder) == before


# --- atomic writes, leftovers, unexpected failures -----------------------------------------------------------------


def test_atomic_write_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "rounds.csv"
    for name in (".rounds.csv.tmp", ".rounds.csv.tmp.tmp", ".rounds.csv"):  # every name an old writer used
        (tmp_path / name).symlink_to(victim)
    atomic_write(target, "new content")
    assert victim.read_text() == "precious" and target.read_text() == "new content" and not target.is_symlink()
    # a link at the target itself is replaced, never written through
    target.unlink()
    target.symlink_to(victim)
    atomic_write(target, "again")
    assert victim.read_text() == "precious" and target.read_text() == "again" and not target.is_symlink()


def test_no_leftovers_after_a_clean_or_killed_finish(tmp_path: Path) -> None:
    path = _write(tmp_path, training__rounds=2)
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    names = {p.name for p in out.iterdir()}
    assert "checkpoint" not in names and LOCK not in names and not any(n.endswith(".tmp") for n in names)
    # what a kill at the very end leaves: an empty checkpoint/, a renamed one, a temporary file
    (out / "checkpoint").mkdir()
    (out / ".checkpoint.old").mkdir()
    (out / ".rounds.csv.abc123.tmp").write_text("half")
    assert main(["run", str(path), "--out", str(out), "--resume", "--quiet"]) == 0
    names = {p.name for p in out.iterdir()}
    assert not names & {"checkpoint", ".checkpoint.old", ".rounds.csv.abc123.tmp", LOCK}


def test_an_unexpected_failure_is_one_line_and_debug_shows_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import simulator.cli as cli

    def boom(args: Any) -> int:
        raise RuntimeError("something nobody foresaw\nsecond line")

    monkeypatch.setattr(cli, "_cmd_devices", boom)
    assert cli.main(["devices"]) == 1
    line = _one_error(capsys)
    assert "unexpected failure (RuntimeError: something nobody foresaw second line)" in line and "--debug" in line
    with pytest.raises(RuntimeError):
        cli.main(["devices", "--debug"])


def test_a_bad_command_line_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["calibrate", "--width", "x"])
    assert exit_.value.code == 2
    assert "invalid int value" in _one_error(capsys)
