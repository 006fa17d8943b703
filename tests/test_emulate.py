"""`splitee emulate`: its refusals (one line each), the profile it emulates, the wire, the fidelity table; and,
where root and network namespaces exist (marked `emulation`), a real 2-client emulation and its clean-up."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from simulator.cli import main
from simulator.commands.fidelity import fidelity_rows
from simulator.config.profiles import DeviceProfile
from simulator.config.scenario import load_scenario
from simulator.emulation.setup import check_can_emulate, check_scenario, emulated_profile, quotas_for
from simulator.emulation.wire import (
    DelayLine,
    Message,
    now,
    pack_tensors,
    recv_message,
    send_message,
    unpack_tensors,
    wait_drained,
)
from simulator.errors import InputError
from tests.scenarios import scenario, write_scenario

LINK = {"uplink_bps": 8.0e6, "downlink_bps": 8.0e6, "latency_s": 0.005, "tx_w": 0.5, "rx_w": 0.25, "packet": {}}
DEVICE = {"flops_per_s": 2.0e9, "memory_bytes": 1.0e9, "compute_w": 3.0, "idle_w": 1.0}
SCENARIO = scenario(
    name="emu_two",
    seed=0,
    dataset__partition={"kind": "iid"},
    dataset__synthetic={"image_size": 28, "in_channels": 1, "num_classes": 10, "train_size": 640, "test_size": 64},
    model__width=8,
    training={"rounds": 1, "local_steps": 6, "batch_size": 32},
    strategy={"name": "averaging"},
    network={"overlap_compute_comm": True},
    server={"device": {"flops_per_s": 3.0e10, "memory_bytes": 1.0e10, "compute_w": 65.0, "idle_w": 10.0}, "workers": 1},
    clients=[
        {"name": "a", "device": DEVICE, "link": LINK, "cut": 1},
        {"name": "b", "device": {**DEVICE, "flops_per_s": 4.0e9}, "link": {**LINK, "uplink_bps": 2.0e7}, "cut": 3},
    ],
    eval={"batch_size": 64},
)


def _write(tmp_path: Path, **changes: Any) -> Path:
    return write_scenario(tmp_path, SCENARIO, **changes)


MACHINE = DeviceProfile.model_validate(
    {
        "name": "m",
        "flops_per_s": 1.0e10,
        "memory_bytes": 1.0e9,
        "compute_w": 9.0,
        "idle_w": 1.0,
        "source": "test",
        "step_overhead_s": 0.002,
        "cpu_s_per_byte_sent": 1.0e-9,
        "unit_flops_per_s": {"u1": 2.0e9},
    }
)


# --- refusals -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"platform": "darwin"}, "needs Linux"),
        ({"platform": "linux", "euid": 1000}, "needs root"),
        ({"platform": "linux", "euid": 0, "netns_ok": False}, "network namespace"),
    ],
)
def test_refuses_where_it_cannot_run(kwargs: dict[str, Any], phrase: str) -> None:
    with pytest.raises(InputError, match=phrase):
        check_can_emulate(**kwargs)


def test_refuses_without_the_cpu_controller(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cgroup-v1 cpu controller"):
        check_can_emulate(platform="linux", euid=0, netns_ok=True, cgroup=tmp_path)


def test_not_root_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["emulate", str(_write(tmp_path))]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "needs root" in err


def test_overwrite_never_empties_a_folder_this_tool_did_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import simulator.emulation.run as emulate_run

    monkeypatch.setattr(emulate_run, "check_can_emulate", lambda: None)  # the folder is claimed before anything runs
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("precious")
    assert main(["emulate", str(_write(tmp_path)), "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "not a run folder this tool wrote" in err
    assert (out / "chapter1.tex").read_text() == "precious" and sorted(p.name for p in out.iterdir()) == [
        "chapter1.tex"
    ]


def test_quotas_by_hand(tmp_path: Path) -> None:
    rs = load_scenario(_write(tmp_path))
    assert quotas_for(rs, MACHINE, cores=2) == pytest.approx([0.2, 0.4])  # 2 and 4 GFLOP/s of 10
    with pytest.raises(InputError, match=r"0\.60 cores for its clients \+ 1 for the server = 1\.60.* 1 cores"):
        quotas_for(rs, MACHINE, cores=1)
    fast = load_scenario(
        _write(tmp_path, clients=[{**SCENARIO["clients"][0], "device": {**DEVICE, "flops_per_s": 2.0e10}}])
    )
    with pytest.raises(InputError, match="faster than one core"):
        quotas_for(fast, MACHINE, cores=8)


@pytest.mark.parametrize(
    ("changes", "phrase"),
    [
        ({"strategy__name": "vanilla_sl"}, "strategy.name"),
        (
            {"strategy__name": "sequential"},
            "strategy.order",
        ),  # client turns: its server does not take batches as they come
        ({"server__workers": 2}, "server.workers"),
        ({"network__activation_dtype": "int8"}, "int8"),
        ({"training__round_deadline_s": 5.0}, "round deadline"),
    ],
)
def test_scenarios_it_does_not_emulate(tmp_path: Path, changes: dict[str, Any], phrase: str) -> None:
    with pytest.raises(InputError, match=phrase):
        check_scenario(load_scenario(_write(tmp_path, **changes)))


def test_lossy_link_is_refused(tmp_path: Path) -> None:
    lossy = [{**SCENARIO["clients"][0], "link": {**LINK, "loss_rate": 0.01}}]
    with pytest.raises(InputError, match="packet loss"):
        check_scenario(load_scenario(_write(tmp_path, clients=lossy)))


# --- what is emulated -----------------------------------------------------------------------------------------------


def test_emulated_profile_by_hand() -> None:
    device = DeviceProfile.model_validate({"name": "d", "source": "s", **DEVICE, "cpu_s_per_byte_sent": 5e-9})
    got = emulated_profile(device, MACHINE, 0.25)
    assert got.flops_per_s == pytest.approx(2.5e9)  # a quarter of the machine
    assert got.unit_flops_per_s == pytest.approx({"u1": 5.0e8})
    assert got.step_overhead_s == pytest.approx(0.008)  # fixed costs take 4x as long
    assert got.cpu_s_per_byte_sent == pytest.approx(4e-9)  # this machine's sending cost, at a quarter of a core
    assert (got.memory_bytes, got.compute_w, got.cpu_s_per_byte_received) == (1_000_000_000, 3.0, 0.0)


def test_send_cpu_is_measured() -> None:
    from simulator.emulation.run import measure_send_cpu

    per_byte = measure_send_cpu(nbytes=200_000, repeats=5)
    assert 1e-12 < per_byte < 1e-6  # a copy and a loopback send: between a terabyte and a megabyte per second


def test_tensors_travel_exactly() -> None:
    h = torch.randn(4, 8, 7, 7)
    y = torch.arange(4, dtype=torch.int64)
    specs, data = pack_tensors([h, y.clone(), h.half()])
    assert len(data) == 4 * 8 * 49 * 4 + 4 * 8 + 4 * 8 * 49 * 2  # numel × element size
    back = unpack_tensors(specs, data)
    assert torch.equal(back[0], h) and torch.equal(back[1], y) and torch.equal(back[2].float(), h.half().float())


def test_messages_and_drain_over_a_socket_pair() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    got: list[Message] = []
    reader = threading.Thread(target=lambda: got.append(recv_message(conn)))
    reader.start()
    payload = bytes(range(256)) * 4096  # 1 MiB
    send_message(client, Message("batch", {"client": 3}, payload))
    t_drained = wait_drained(client, timeout_s=30)
    reader.join(timeout=30)
    assert got[0].kind == "batch" and got[0].meta == {"client": 3} and got[0].payload == payload
    assert t_drained <= now()
    for s in (client, conn, server):
        s.close()


def test_delay_line_delivers_in_due_order() -> None:
    out: list[tuple[str, float]] = []
    line = DelayLine(lambda m, t: out.append((m.kind, t)))
    t = now()
    line.put(Message("late", t_received=t), 0.06)
    line.put(Message("early", t_received=t), 0.02)
    time.sleep(0.15)
    line.close()
    assert [k for k, _ in out] == ["early", "late"]
    assert [due for _, due in out] == pytest.approx([t + 0.02, t + 0.06])


def _fake_run(folder: Path, rounds: list[float], events: list[tuple[Any, ...]]) -> Path:
    folder.mkdir()
    with (folder / "rounds.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["round", "sim_time_s"])
        w.writerows(enumerate(rounds, start=1))
    with (folder / "events.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_start", "t_end", "entity", "kind", "round", "bytes", "flops", "energy_j"])
        w.writerows(events)
    return folder


def test_fidelity_rows_by_hand(tmp_path: Path) -> None:
    emu = _fake_run(
        tmp_path / "emu",
        [2.0, 5.0],
        [
            (0, 1.5, "a", "tx", 1, 0, 0, 0),
            (2.0, 4.0, "a", "compute", 2, 0, 0, 0),
            (2.5, 4.5, "server", "compute", 2, 0, 0, 0),
        ],
    )
    sim = _fake_run(
        tmp_path / "sim",
        [1.8, 4.8],
        [
            (0, 1.2, "a", "tx", 1, 0, 0, 0),
            (1.8, 3.6, "a", "compute", 2, 0, 0, 0),
            (1.9, 4.7, "server", "compute", 2, 0, 0, 0),
        ],
    )
    rows = fidelity_rows(emu, sim)
    assert [r[:3] for r in rows] == [
        (1, "all", "round_s"),
        (1, "a", "client_trained_s"),
        (2, "all", "round_s"),
        (2, "a", "client_trained_s"),
        (2, "server", "server_trained_s"),
    ]
    # round 1: 2.0 vs 1.8 s; a trained by 1.5 vs 1.2 s; round 2: 3.0 vs 3.0 s; a by 2.0 vs 1.8; server 2.5 vs 2.9
    assert [r[5] for r in rows] == pytest.approx([1.8 / 2 - 1, 1.2 / 1.5 - 1, 0.0, 1.8 / 2 - 1, 2.9 / 2.5 - 1])


# --- the real thing (root, network namespaces, cgroup-v1 cpu) ---------------------------------------------------------


def _can_emulate() -> str | None:
    try:
        check_can_emulate()
    except InputError as err:
        return err.one_line()
    return None


def _leftovers() -> list[str]:
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    groups = [p.name for p in Path("/sys/fs/cgroup/cpu").iterdir() if p.name.startswith("sx")]
    return [n for n in names if n.startswith("sx") and not n.startswith("sxprobe")] + groups


@pytest.mark.emulation
def test_two_clients_emulated_within_ten_percent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    why = _can_emulate()
    if why:
        pytest.skip(why)
    before = _leftovers()
    out = tmp_path / "run"
    assert main(["emulate", str(_write(tmp_path)), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    with (out / "fidelity.csv").open() as f:
        rows = list(csv.DictReader(f))
    (rnd,) = [r for r in rows if r["what"] == "round_s"]
    error = float(rnd["error"])
    print(
        f"\n2-client emulated round {float(rnd['emulated_s']):.3f} s, simulated {float(rnd['simulated_s']):.3f} s, "
        f"error {error:+.1%} (load {os.getloadavg()[0]:.2f})",
        file=sys.stderr,
    )
    assert "round_s" in printed
    assert abs(error) < 0.10
    # Averaging learns the same whatever the timing: the real processes trained exactly what the simulator did.
    with (out / "clients.csv").open() as f, (out / "simulated" / "clients.csv").open() as g:
        emu, sim = list(csv.DictReader(f)), list(csv.DictReader(g))
    for e, s in zip(emu, sim):
        assert (e["train_loss_exit"], e["train_loss_server"], e["final_accuracy"]) == (
            s["train_loss_exit"],
            s["train_loss_server"],
            s["final_accuracy"],
        )
    assert _leftovers() == before


@pytest.mark.emulation
def test_interrupted_emulation_cleans_up(tmp_path: Path) -> None:
    why = _can_emulate()
    if why:
        pytest.skip(why)
    before = _leftovers()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator.cli",
            "emulate",
            str(_write(tmp_path)),
            "--out",
            str(tmp_path / "run"),
            "--profile",
            str(_machine_file(tmp_path)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_leftovers()) <= len(before) + 3:  # wait for the fleet to exist
        time.sleep(0.1)
    assert len(_leftovers()) > len(before), "the fleet never came up"
    time.sleep(2.0)  # its processes are starting
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert _leftovers() == before
    assert not [
        line
        for line in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
        if str(tmp_path) in line
    ]


def _machine_file(tmp_path: Path) -> Path:
    path = tmp_path / "this_machine.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in MACHINE.model_dump().items() if k != "name"}))
    return path


def test_effective_quotas_by_hand(tmp_path: Path) -> None:
    from simulator.costs.compute_model import client_forward_flops, client_rest_flops, total
    from simulator.costs.table_cache import table_for
    from simulator.emulation.setup import effective_quotas

    rs = load_scenario(_write(tmp_path))
    plain = DeviceProfile.model_validate({**MACHINE.model_dump(), "unit_flops_per_s": None, "step_overhead_s": 0.0})
    table = table_for(8, 1, 10, 28, rs.scenario.model.exit_head, rs.scenario.model.exit_grid)
    full = [
        (total(client_forward_flops(table, c, 32)) + total(client_rest_flops(table, c, 32))) / 1.0e10 for c in (1, 3)
    ]
    # Steps measured 5x and 8x slower than the whole core would run them: shares 0.2 and 0.125.
    got = effective_quotas(rs, plain, [5 * full[0], 8 * full[1]])
    assert got == pytest.approx([0.2, 0.125], rel=1e-9)
