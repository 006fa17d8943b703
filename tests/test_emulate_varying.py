"""`splitee emulate` with conditions that change over time: the schedule of `tc class change` lines and CPU-quota
writes computed from a scenario's pieces (times and rates by hand), the scheduler's clock across rounds, the
refusals; and, where root and network namespaces exist (marked `emulation`), a real transfer across rate changes
against the integral of the rate."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from simulator.cli import main
from simulator.config.scenario import load_scenario
from simulator.emulation.fleet import CFS_PERIOD_US, Fleet, FleetPlan, LinkPlan
from simulator.emulation.scheduler import Scheduler, run
from simulator.emulation.setup import check_scenario
from simulator.emulation.varying import ClientPieces, Clock, Steps, check_quota_floor, pieces_of, targets_of
from simulator.errors import InputError
from tests.scenarios import scenario, write_scenario

LINK = {"uplink_bps": 8.0e6, "downlink_bps": 8.0e6, "latency_s": 0.005, "tx_w": 0.5, "rx_w": 0.25, "packet": {}}
DEVICE = {"flops_per_s": 2.0e9, "memory_bytes": 1.0e9, "compute_w": 3.0, "idle_w": 1.0}
SCENARIO = scenario(
    name="emu_vary",
    seed=3,
    dataset__partition={"kind": "iid"},
    dataset__synthetic={"image_size": 28, "in_channels": 1, "num_classes": 10, "train_size": 640, "test_size": 64},
    model__width=8,
    training={"rounds": 1, "local_steps": 2, "batch_size": 32},
    strategy={"name": "averaging"},
    server={"device": {"flops_per_s": 3.0e10, "memory_bytes": 1.0e10, "compute_w": 65.0, "idle_w": 10.0}, "workers": 1},
    clients=[
        {"name": "a", "device": DEVICE, "link": LINK, "cut": 1},
        {"name": "b", "device": DEVICE, "link": LINK, "cut": 3},
    ],
    eval={"batch_size": 64},
)
# Rates and latency every few seconds; repeated, the last row (t = 6) ends the period.
TRACE = "t_s,uplink_bps,latency_s\n0,4.0e6,0.010\n2.5,1.0e6,0.050\n4,6.0e6,0.020\n6,4.0e6,0.010\n"


def _write(tmp_path: Path, clients: list[dict[str, Any]] | None = None, **top: Any) -> Path:
    """SCENARIO with these clients and top-level sections, next to the trace up.csv."""
    (tmp_path / "up.csv").write_text(TRACE)
    if clients is not None:
        top["clients"] = clients
    return write_scenario(tmp_path, SCENARIO, **top)


def _traced(offset: float = 1.0) -> dict[str, Any]:
    return {
        "name": "a",
        "device": DEVICE,
        "cut": 1,
        "link": {**LINK, "variation": {"kind": "trace", "file": "up.csv", "after_end": "repeat", "offset": offset}},
    }


def _plan(n: int, media: dict[str, float] | None = None, medium: str | None = None) -> Fleet:
    return Fleet(
        FleetPlan(
            tag="sxT", links=tuple(LinkPlan(8e6, 8e6, medium) for _ in range(n)), quotas=(0.3,) * n, media=media or {}
        )
    )


# --- the schedule, by hand -------------------------------------------------------------------------------------------


def test_trace_pieces_by_hand(tmp_path: Path) -> None:
    rs = load_scenario(_write(tmp_path, clients=[_traced(offset=1.0), SCENARIO["clients"][1]]))
    a, b = pieces_of(rs, horizon_s=12.0)
    # Entering the trace at 1 s: 4 Mbit/s until trace time 2.5 (run time 1.5), 1 until 4 (3.0), 6 until 6 (5.0),
    # then the period (6 s) again from run time 5.0: 4 from 5.0, 1 from 7.5, 6 from 9.0, 4 from 11.0.
    assert a.up_bps == Steps((0.0, 1.5, 3.0, 5.0, 7.5, 9.0, 11.0), (4e6, 1e6, 6e6, 4e6, 1e6, 6e6, 4e6))
    assert a.latency_s == Steps((0.0, 1.5, 3.0, 5.0, 7.5, 9.0, 11.0), (0.01, 0.05, 0.02, 0.01, 0.05, 0.02, 0.01))
    assert a.down_bps is None and a.speed is None  # the trace leaves the downlink at the profile's 8 Mbit/s
    assert b == ClientPieces()


def test_tc_lines_by_hand(tmp_path: Path) -> None:
    rs = load_scenario(_write(tmp_path, clients=[SCENARIO["clients"][1], _traced(offset=0.0)]))
    fleet = _plan(2)
    (target,) = targets_of(pieces_of(rs, horizon_s=7.0), [0.3, 0.3], fleet, CFS_PERIOD_US)
    assert target.name == "client1 uplink"
    assert target.starts == (0.0, 2.5, 4.0, 6.0)
    assert target.actions[:2] == (
        (
            (
                "tc",
                "sxTc1",
                "class change dev sxTv1 parent 1: classid 1:1 htb rate 4000000bit ceil 4000000bit quantum 1514",
            ),
        ),
        (
            (
                "tc",
                "sxTc1",
                "class change dev sxTv1 parent 1: classid 1:1 htb rate 1000000bit ceil 1000000bit quantum 1514",
            ),
        ),
    )


def test_a_client_on_a_medium_also_changes_its_class_at_the_access_point() -> None:
    fleet = _plan(2, media={"ap": 9e6}, medium="ap")
    pieces = [ClientPieces(), ClientPieces(up_bps=Steps((0.0, 1.0), (12e6, 2e6)))]
    (target,) = targets_of(pieces, [0.3, 0.3], fleet, CFS_PERIOD_US)
    # Client 1 is the medium's second member: class 1:11, guaranteed 9/2 Mbit/s, allowed min(9, its rate).
    assert target.actions[0][1] == (
        "tc",
        "sxTm0",
        "class change dev sxTa0 parent 1:1 classid 1:11 htb rate 4500000bit ceil 9000000bit quantum 1514",
    )
    assert target.actions[1][1][2].endswith("rate 4500000bit ceil 2000000bit quantum 1514")
    assert fleet.downlink(1) == ("sxTm0", "sxTw1")


def test_speed_and_downlink_targets_by_hand() -> None:
    fleet = _plan(1)
    pieces = [ClientPieces(down_bps=Steps((0.0, 2.0), (3e6, 5e5)), speed=Steps((0.0, 0.75), (1.0, 0.4)))]
    down, cpu = targets_of(pieces, [0.3], fleet, CFS_PERIOD_US)
    assert down.actions[1] == (
        ("tc", "sxTs", "class change dev sxTw0 parent 1: classid 1:1 htb rate 500000bit ceil 500000bit quantum 1514"),
    )
    # 0.3 of a core × speed 0.4 × the 10,000 us period = 1,200 us per period.
    assert cpu.starts == (0.0, 0.75)
    assert cpu.actions == (
        (("write", "/sys/fs/cgroup/cpu/sxT/c0/cpu.cfs_quota_us", "3000"),),
        (("write", "/sys/fs/cgroup/cpu/sxT/c0/cpu.cfs_quota_us", "1200"),),
    )


def test_markov_pieces_are_the_simulations(tmp_path: Path) -> None:
    """The emulated schedule is the simulation's: at every start the simulation's rate bank (another path through
    the same draws) gives the same rate."""
    from simulator.rng import Streams
    from simulator.timing.conditions import conditions_of

    chain = {
        "kind": "markov",
        "states": {"good": {"dwell_s": 2.0}, "bad": {"dwell_s": 1.0, "uplink_bps": 0.25, "latency_s": 4.0}},
    }
    device = {
        **DEVICE,
        "variation": {"kind": "markov", "states": {"fast": {"dwell_s": 3.0}, "slow": {"dwell_s": 3.0, "speed": 0.5}}},
    }
    clients = [
        {"name": "a", "device": device, "cut": 1, "link": {**LINK, "variation": chain}},
        {"name": "b", "device": DEVICE, "cut": 1, "link": {**LINK, "variation": chain}},
    ]
    rs = load_scenario(_write(tmp_path, clients=clients))
    got = pieces_of(rs, horizon_s=60.0)
    cond = conditions_of(rs, Streams(rs.scenario.seed))
    for i, p in enumerate(got):
        assert p.up_bps is not None and p.latency_s is not None and len(p.up_bps.starts) > 5
        assert set(p.up_bps.values) == {8e6, 2e6} and set(p.latency_s.values) == {0.005, 0.02}
        # One time per call: a call holding one row at times in different windows of the bank is answered from
        # whichever window was filled last (RateBank._locate).
        bank = [float(cond.up.value(np.array([i]), np.array([t + 1e-9]))[0]) for t in p.up_bps.starts]
        assert bank == pytest.approx([v / 8e6 for v in p.up_bps.values])
    assert got[0].up_bps != got[1].up_bps  # each client its own chain
    assert got[0].speed is not None and set(got[0].speed.values) == {1.0, 0.5} and got[1].speed is None


def test_clock_maps_simulated_time_onto_the_round() -> None:
    c = Clock(t0=100.0, e0=7.5)
    assert c.emulated(101.25) == 8.75 and c.real(9.0) == 101.5


# --- the scheduler ----------------------------------------------------------------------------------------------------


def _targets() -> list[dict[str, Any]]:
    return [
        {
            "name": "x",
            "starts": [0.0, 1.0, 3.0],
            "actions": [[["tc", "n", "A"]], [["tc", "n", "B"]], [["tc", "n", "C"]]],
        }
    ]


def test_scheduler_follows_the_emulated_clock_and_takes_back_what_a_gap_reached_early() -> None:
    done: list[str] = []
    s = Scheduler(_targets(), lambda acts: done.extend(a[2] for a in acts))
    assert s.next_due() is None  # no round yet
    s.set_clock(t0=50.0, e0=0.0)  # round 1 starts at real 50
    assert done == ["A"] and s.next_due() == 51.0
    s.catch_up(51.0)
    assert done == ["A", "B"] and s.next_due() == 53.0
    s.catch_up(53.2)  # the round ended at real 52 (emulated 2), but the real clock ran on in the gap
    assert done == ["A", "B", "C"]
    s.set_clock(t0=60.0, e0=2.0)  # round 2 starts at emulated 2: back to B until emulated 3 = real 61
    assert done == ["A", "B", "C", "B"] and s.next_due() == 61.0
    s.catch_up(61.0)
    assert done[-1] == "C" and s.next_due() is None


def test_scheduler_process_loop_applies_changes_on_time() -> None:
    read, write = os.pipe()
    got: list[tuple[str, float]] = []

    def clock() -> float:
        return time.clock_gettime(time.CLOCK_MONOTONIC)

    t0 = clock() + 0.05
    late: list[tuple[float, float]] = []
    worker = threading.Thread(
        target=lambda: late.extend(
            run(
                [
                    {
                        "name": "x",
                        "starts": [0.0, 0.1, 0.2],
                        "actions": [[["w", "", "A"]], [["w", "", "B"]], [["w", "", "C"]]],
                    }
                ],
                read,
                lambda acts: got.extend((a[2], clock()) for a in acts),
                clock,
            )
        )
    )
    worker.start()
    os.write(write, f'{{"t0": {t0}, "e0": 0.0}}\n'.encode())
    time.sleep(0.4)
    os.close(write)  # the server's exit ends the scheduler
    worker.join(timeout=10)
    assert not worker.is_alive() and [k for k, _ in got] == ["A", "B", "C"]
    assert [t - t0 for _, t in got[1:]] == pytest.approx([0.1, 0.2], abs=0.03)
    assert [e for e, _ in late] == pytest.approx([0.1, 0.2])
    os.close(read)


# --- refusals -------------------------------------------------------------------------------------------------------


def _device_varied(variation: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "a", "device": {**DEVICE, "variation": variation}, "link": LINK, "cut": 1}]


@pytest.mark.parametrize(
    ("clients", "top", "phrase"),
    [
        (_device_varied({"kind": "throttle", "after_s": 5.0, "factor": 0.5, "cool_s": 2.0}), {}, "cannot throttle"),
        (
            [
                {
                    "name": "a",
                    "device": DEVICE,
                    "cut": 1,
                    "link": {**LINK, "variation": {"kind": "trace", "file": "loss.csv"}},
                }
            ],
            {},
            "sets loss_rate",
        ),
        (
            [{"name": "a", "device": DEVICE, "cut": 1, "link": LINK, "medium": "ap"}],
            {"network": {"media": {"ap": {"capacity_bps": 2e7, "variation": {"kind": "trace", "file": "cap.csv"}}}}},
            "does not vary a shared medium",
        ),
    ],
)
def test_what_it_cannot_vary_is_refused_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    clients: list[dict[str, Any]],
    top: dict[str, Any],
    phrase: str,
) -> None:
    import simulator.emulation.run as emulate_run

    (tmp_path / "loss.csv").write_text("t_s,loss_rate\n0,0\n1,0.02\n")
    (tmp_path / "cap.csv").write_text("t_s,capacity_bps\n0,2e7\n1,5e6\n")
    path = _write(tmp_path, clients=clients, **top)
    with pytest.raises(InputError, match=phrase):
        check_scenario(load_scenario(path))
    monkeypatch.setattr(emulate_run, "check_can_emulate", lambda: None)
    assert main(["emulate", str(path), "--out", str(tmp_path / "run")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and phrase in err and "variation" in err
    assert not (tmp_path / "run" / "emulation").exists()  # refused before anything ran


def test_a_loss_trace_at_zero_loss_is_emulated(tmp_path: Path) -> None:
    (tmp_path / "loss.csv").write_text("t_s,loss_rate,uplink_bps\n0,0,4e6\n1,0,2e6\n")
    link = {**LINK, "variation": {"kind": "trace", "file": "loss.csv"}}
    check_scenario(load_scenario(_write(tmp_path, clients=[{"name": "a", "device": DEVICE, "cut": 1, "link": link}])))


def test_a_speed_under_the_quota_floor_is_refused(tmp_path: Path) -> None:
    rs = load_scenario(
        _write(
            tmp_path,
            clients=_device_varied(
                {"kind": "markov", "states": {"fast": {"dwell_s": 3.0}, "slow": {"dwell_s": 3.0, "speed": 0.2}}}
            ),
        )
    )
    pieces = pieces_of(rs, horizon_s=60.0)
    check_quota_floor(rs, pieces, [0.5], CFS_PERIOD_US)  # 0.5 × 0.2 = 0.1 of a core: 1,000 us, the floor itself
    with pytest.raises(InputError, match=r"down to 0\.2, a CPU quota of 0\.0800 of a core, under the 0\.10"):
        check_quota_floor(rs, pieces, [0.4], CFS_PERIOD_US)


# --- the real thing (root, network namespaces, cgroup-v1 cpu) ---------------------------------------------------------


def _in_netns(path: str, fn: Callable[[], Any]) -> Any:
    """fn() run in a thread that entered the network namespace at `path` (setns changes only the calling thread):
    a socket made there stays in that namespace."""
    from simulator.emulation.fleet import enter_netns

    box: list[Any] = []

    def go() -> None:
        enter_netns(path)
        box.append(fn())

    t = threading.Thread(target=go)
    t.start()
    t.join(timeout=30)
    return box[0]


@pytest.mark.emulation
def test_a_transfer_across_rate_changes_takes_the_integral(tmp_path: Path) -> None:
    """1,000 full TCP segments (1,448,000 payload bytes = 1,500,000 IP bytes = 12 Mbit at the IP level, what htb
    counts) sent at the round's start over an uplink at 4 Mbit/s until 0.8 s (3.2 Mbit), 12 Mbit/s until 1.3 s
    (6 Mbit), then 2 Mbit/s: the remaining 2.8 Mbit take 1.4 s, 2.7 s in all. The CPU quota's speed change at 1 s
    is written too."""
    from simulator.emulation.setup import check_can_emulate
    from simulator.emulation.wire import now, wait_drained

    try:
        check_can_emulate()
    except InputError as err:
        pytest.skip(err.one_line())
    fleet = Fleet(FleetPlan(tag=f"sx{os.getpid() % 0xFFF:x}t", links=(LinkPlan(6e6, 1e8),), quotas=(0.5,)))
    pieces = [ClientPieces(up_bps=Steps((0.0, 0.8, 1.3), (4e6, 12e6, 2e6)), speed=Steps((0.0, 1.0), (1.0, 0.6)))]
    targets = targets_of(pieces, [0.5], fleet, CFS_PERIOD_US)
    cfg = tmp_path / "scheduler.json"
    proc = None
    with fleet:
        cfg.write_text(
            json.dumps(
                {
                    "cgroup": fleet.scheduler_cgroup(),
                    "log": str(tmp_path / "late.json"),
                    "targets": [t.to_json() for t in targets],
                }
            )
        )
        read, write = os.pipe()
        proc = subprocess.Popen(
            [sys.executable, "-m", "simulator.emulation.scheduler", str(cfg)],
            stdin=read,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(read)
        try:
            listener = _in_netns(fleet.netns_path(fleet.server_ns), lambda: socket.create_server(("10.201.0.1", 47117)))
            sender = _in_netns(fleet.netns_path(fleet.client_ns[0]), socket.socket)
            sender.connect(("10.201.0.1", 47117))
            sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn, _ = listener.accept()
            received = bytearray()

            def drain() -> None:
                while len(received) < 1_448_000:
                    got = conn.recv(1 << 20)
                    if not got:
                        return
                    received.extend(got)

            sink = threading.Thread(target=drain, daemon=True)
            sink.start()
            t0 = now() + 0.3
            os.write(write, f'{{"t0": {t0}, "e0": 0.0}}\n'.encode())
            time.sleep(t0 - now())
            start = now()
            sender.sendall(b"x" * 1_448_000)
            took = wait_drained(sender, 60) - start
            quota = (Path(fleet.client_cgroup(0)) / "cpu.cfs_quota_us").read_text().strip()
            sink.join(timeout=10)
            for s in (sender, conn, listener):
                s.close()
        finally:
            os.close(write)
            _, err = proc.communicate(timeout=30)
    print(
        f"\n12 Mbit across two rate changes: {took:.3f} s (the integral: 2.700 s); scheduler: {err.strip()}",
        file=sys.stderr,
    )
    assert proc.returncode == 0, err
    assert len(received) == 1_448_000
    assert took == pytest.approx(2.7, rel=0.03)
    assert quota == "3000"  # 0.5 of a core × speed 0.6 × 10,000 us
