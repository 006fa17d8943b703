"""`splitee emulate` runs an emulation: measure the machine, make the fleet, start and
watch the processes, write the run folder, simulate the same scenario, compare; every namespace, link, group and
process removed at the end."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from simulator.config.profiles import DeviceProfile, load_profile_dir
from simulator.config.scenario import ResolvedScenario, load_scenario
from simulator.emulation.setup import check_can_emulate, check_scenario, effective_quotas, emulated_scenario, quotas_for
from simulator.errors import InputError
from simulator.output.checkpoint_io import load_file
from simulator.output.run_folder import RunFolder

__all__ = ["run_emulation", "measure_machine", "measure_send_cpu", "assemble", "favoured"]

POLL_S = 0.2


def measure_machine(rs: ResolvedScenario, repeats: int = 7, warmup: int = 2) -> DeviceProfile:
    """This machine's compute model at the scenario's shape, as `splitee calibrate` fits it (one torch thread)."""
    import torch

    from simulator.commands.calibrate import calibrate
    from simulator.commands.calibrate_cuts import fit_cuts, time_cut_steps
    from simulator.costs.table_cache import cost_table_of

    torch.set_num_threads(1)
    sc = rs.scenario
    in_ch, size, classes = sc.dataset.shape()
    shape = dict(width=sc.model.width, in_channels=in_ch, image_size=size, batch=sc.training.batch_size)
    cal = calibrate(**shape, repeats=repeats, warmup=warmup)
    steps = time_cut_steps(
        **shape,
        exit_head=sc.model.exit_head,
        exit_grid=sc.model.exit_grid,
        num_classes=classes,
        repeats=repeats,
        warmup=warmup,
    )
    table = cost_table_of(sc)
    fit = fit_cuts(
        table, sc.training.batch_size, steps, {u.unit: u.train_flops_per_s for u in cal.units}, cal.flops_per_s
    )
    send_cpu = measure_send_cpu()
    print(
        f"this machine: {fit.fitted_flops_per_s / 1e9:.2f} GFLOP/s, step overhead "
        f"{fit.fit.overhead_s * 1e3:.2f} ms, fit residual {fit.fit.max_rel:.1%}, sending {send_cpu * 1e9:.2f} ns "
        f"of CPU per byte (load {os.getloadavg()[0]:.2f})",
        file=sys.stderr,
        flush=True,
    )
    return DeviceProfile.model_validate(
        {
            "name": "this_machine",
            "flops_per_s": fit.fitted_flops_per_s,
            "unit_flops_per_s": fit.fitted_unit_rates,
            "step_overhead_s": fit.fit.overhead_s,
            "cpu_s_per_byte_sent": send_cpu,
            "memory_bytes": rs.server.memory_bytes,
            "compute_w": rs.server.compute_w,
            "idle_w": rs.server.idle_w,
            "source": "measured by splitee emulate before the run (splitee calibrate's method, 1 torch thread; "
            "cpu_s_per_byte_sent: measure_send_cpu)",
        }
    )


@contextmanager
def favoured(tag: str) -> Iterator[None]:
    """Runs the block in a cgroup-v1 group of its own with the emulated processes' high cpu.shares and no quota:
    the machine is then measured as the emulated processes will find it on a busy machine (in the root group it
    would get only its share among the other jobs)."""
    from simulator.emulation.fleet import CFS_PERIOD_US, CGROUP_CPU, SHARES, join_cgroup

    path = CGROUP_CPU / tag
    path.mkdir()
    try:
        (path / "cpu.shares").write_text(str(SHARES))
        (path / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
        join_cgroup(str(path))
        yield
    finally:
        (CGROUP_CPU / "cgroup.procs").write_text(str(os.getpid()))  # back to the root group
        path.rmdir()


def measure_send_cpu(nbytes: int = 800_000, repeats: int = 20) -> float:
    """Processor seconds per byte of sending a feature message over TCP on this machine (packing the tensor and
    the kernel's work in the sending thread: on loopback, as over a veth, the receiving side's softirq mostly runs
    there too): the median over ``repeats`` messages of the sending thread's CPU time (time.thread_time) / bytes."""
    import socket
    import statistics
    import threading

    import torch

    from simulator.emulation.wire import Message, pack_tensors, recv_message, send_message

    listener = socket.create_server(("127.0.0.1", 0))
    sink = socket.create_connection(listener.getsockname())
    conn, _ = listener.accept()
    reader = threading.Thread(target=lambda: [recv_message(conn) for _ in range(repeats + 2)], daemon=True)
    reader.start()
    h = torch.randn(nbytes // 4)
    samples = []
    for k in range(repeats + 2):
        t0 = time.thread_time()
        specs, data = pack_tensors([h])
        send_message(sink, Message("batch", {"specs": specs}, data))
        if k >= 2:  # two warm-up messages
            samples.append((time.thread_time() - t0) / len(data))
    reader.join(timeout=60)
    for s in (sink, conn, listener):
        s.close()
    return statistics.median(samples)


def _load_profile(path: str) -> DeviceProfile:
    p = Path(path)
    if p.suffix != ".yaml" or not p.is_file():
        raise InputError(f"no profile file {p}", key="--profile")
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(p, Path(folder) / p.name)
        return load_profile_dir(Path(folder), DeviceProfile)[p.stem]  # type: ignore[return-value]


def _spawn(
    module: str, cfg: dict[str, Any], work: Path, tag: str, *, stdin: int | None = None, pass_fds: tuple[int, ...] = ()
) -> subprocess.Popen[bytes]:
    path = work / f"{tag}.json"
    path.write_text(json.dumps(cfg))
    log = (work / f"{tag}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", module, str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=stdin,
        pass_fds=pass_fds,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _watch(procs: dict[str, subprocess.Popen[bytes]], work: Path, timeout_s: float) -> None:
    """Until every process has exited; one failing (or the time running out) ends the run with its log's tail."""
    deadline = time.monotonic() + timeout_s
    while True:
        codes = {tag: p.poll() for tag, p in procs.items()}
        bad = [tag for tag, c in codes.items() if c not in (None, 0)]
        if bad:
            tail = (work / f"{bad[0]}.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"emulated process {bad[0]} failed (exit {codes[bad[0]]}): {' | '.join(tail)}")
        if all(c == 0 for c in codes.values()):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the emulation did not finish within {timeout_s:.0f} s")
        time.sleep(POLL_S)


def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for p in procs.values():  # only the processes started here, by their own ids
        if p.poll() is None:
            p.terminate()
    for p in procs.values():
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def assemble(rs: ResolvedScenario, server_result: dict[str, Any], client_rows: list[list[Any]]) -> tuple[Any, Any]:
    """RoundRecords and a Recorder of the measured intervals, on an emulated clock that starts each round where the
    last one ended (as a simulated run's rounds follow each other)."""
    from simulator.engine.simulation import RoundRecord
    from simulator.learning.training import EvalResult
    from simulator.timing.recorder import EntityPower, Recorder
    from simulator.timing.server import SERVER

    powers = {c.name: EntityPower.of_client(c.device, c.link) for c in rs.clients}
    powers[SERVER] = EntityPower.of_server(rs.server)
    recorder = Recorder(powers)
    shift, start, records = {}, 0.0, []
    for r in server_result["rounds"]:
        shift[r["round"]] = start - r["t0"]
        start += r["t_end"] - r["t0"]
    rows = sorted([*server_result["events"], *client_rows], key=lambda e: (e[3], e[0]))
    for entity, kind, rnd, t0, t1, nbytes, flops, direction in rows:
        d = shift[rnd]
        recorder.interval(entity, kind, rnd, t0 + d, t1 + d, nbytes=nbytes, flops=flops, direction=direction)
    names = [c.name for c in rs.clients]
    everyone = list(range(len(rs.clients)))
    for r in server_result["rounds"]:
        t0, t1 = r["t0"] + shift[r["round"]], r["t_end"] + shift[r["round"]]
        recorder.close_round(r["round"], t0, t1, names + [SERVER])
        records.append(
            RoundRecord(
                round=r["round"],
                t_start=t0,
                sim_time_s=t1,
                host_seconds=r["t_end"] - r["t0"],
                present=everyone,
                exit_loss={i: r["exit_loss"][str(i)] for i in everyone},
                server_loss={i: r["server_loss"][str(i)] for i in everyone},
                status={i: "ok" for i in everyone},
                steps_done={i: server_result["steps"][i] for i in everyone},
            )
        )
    records[-1].evals = {int(i): EvalResult(*e) for i, e in server_result["evals"].items()}
    return records, recorder


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # a terminated emulation cleans up like an interrupted one


def run_emulation(args: argparse.Namespace) -> int:
    import torch

    from simulator.commands.fidelity import fidelity_markdown, fidelity_rows, write_fidelity
    from simulator.commands.runner import run_scenario
    from simulator.emulation.fleet import CFS_PERIOD_US, Fleet, FleetPlan, LinkPlan
    from simulator.emulation.varying import check_quota_floor, pieces_of, targets_of
    from simulator.output.results import write_resolved, write_run

    torch.set_num_threads(1)  # as every emulated process; more threads than free cores only spin on a busy machine
    check_can_emulate()
    rs = load_scenario(args.scenario, args.set)
    check_scenario(rs)
    out = Path(args.out or f"runs/{rs.scenario.name}-emulated")
    # The folder is claimed like `splitee run`'s: --overwrite only empties a run folder this tool wrote, and one
    # process at a time writes it.
    claim = "replace" if args.overwrite else "refuse"
    with RunFolder(out).claim(existing=claim, protect=[Path(rs.file)]):
        if args.profile:
            machine = _load_profile(args.profile)
        else:
            with favoured(f"sx{os.getpid() % 0xFFFF:x}cal"):
                machine = measure_machine(rs)
        cores = os.cpu_count() or 1
        quotas = quotas_for(rs, machine, cores)
        emu = emulated_scenario(rs, machine, quotas)
        # The pieces the simulation of this scenario runs with (the same draws), as far as the run can reach.
        pieces = pieces_of(emu, args.timeout)
        check_quota_floor(emu, pieces, quotas, CFS_PERIOD_US)
        latency = [p.latency_s.to_json() if p.latency_s is not None else None for p in pieces]
        load = os.getloadavg()
        print(
            f"emulating {len(rs.clients)} clients on quotas {', '.join(f'{q:.3f}' for q in quotas)} of a core "
            f"({cores} cores, load {load[0]:.2f})",
            file=sys.stderr,
            flush=True,
        )
        work = out / "emulation"
        work.mkdir(parents=True)
        write_resolved(out, emu)
        sc = emu.scenario
        plan = FleetPlan(
            tag=f"sx{os.getpid() % 0xFFFF:x}",
            links=tuple(LinkPlan(c.link.uplink_bps, c.link.downlink_bps, c.medium) for c in emu.clients),
            quotas=tuple(quotas),
            media={name: m.capacity_bps for name, m in sc.network.media.items()},
        )
        procs: dict[str, subprocess.Popen[bytes]] = {}
        previous = signal.signal(signal.SIGTERM, _interrupt)
        fleet = Fleet(plan)
        targets = targets_of(pieces, quotas, fleet, CFS_PERIOD_US)
        try:
            fleet.open()
            base = {"scenario": str(out / "scenario.resolved.yaml"), "port": args.port}
            clock_r, clock_w = os.pipe() if targets else (None, None)  # the server tells the scheduler its rounds
            if targets:
                procs["scheduler"] = _spawn(
                    "simulator.emulation.scheduler",
                    {
                        "cgroup": fleet.scheduler_cgroup(),
                        "targets": [t.to_json() for t in targets],
                        "log": str(work / "scheduler.json"),
                    },
                    work,
                    "scheduler",
                    stdin=clock_r,
                )
            procs["server"] = _spawn(
                "simulator.emulation.server",
                {
                    **base,
                    "netns": fleet.netns_path(fleet.server_ns),
                    "cgroup": fleet.server_cgroup(),
                    "result": str(work / "server.pt"),
                    "seed": sc.seed,
                    "latency": latency,
                    "clock_fd": clock_w,
                },
                work,
                "server",
                pass_fds=(clock_w,) if clock_w is not None else (),
            )
            for fd in (clock_r, clock_w):  # only the two processes hold the pipe: the server's exit ends it
                if fd is not None:
                    os.close(fd)
            for i in range(len(emu.clients)):
                procs[f"client{i}"] = _spawn(
                    "simulator.emulation.client",
                    {
                        **base,
                        "index": i,
                        "netns": fleet.netns_path(fleet.client_ns[i]),
                        "cgroup": fleet.client_cgroup(i),
                        "server_addr": fleet.server_addr[i],
                        "events": str(work / f"client{i}.json"),
                        "latency": latency[i],
                    },
                    work,
                    f"client{i}",
                )
            _watch(procs, work, args.timeout)
        finally:
            _stop(procs)
            problems = fleet.close()
            signal.signal(signal.SIGTERM, previous)
            for line in problems:
                print(f"warning: not cleaned up: {line}", file=sys.stderr)
        result = load_file(work / "server.pt")  # tensors and plain data only: nothing in it can run code
        rows = [row for i in range(len(emu.clients)) for row in json.loads((work / f"client{i}.json").read_text())]
        # What each client really ran at, measured on its quota before the run: the simulation gets that device.
        got = effective_quotas(rs, machine, result["client_step_s"])
        emu = emulated_scenario(rs, machine, got)
        write_resolved(out, emu)
        records, recorder = assemble(emu, result, rows)
        emulated = {
            "quotas": dict(zip((c.name for c in emu.clients), quotas)),
            "measured_shares": dict(zip((c.name for c in emu.clients), got)),
            "measured_step_s": dict(zip((c.name for c in emu.clients), result["client_step_s"])),
            "cfs_period_us": 10_000,
            "machine_flops_per_s": machine.flops_per_s,
            "machine_step_overhead_s": machine.step_overhead_s,
            "cores": cores,
            "load_average_at_start": load[0],
            "load_average_at_end": os.getloadavg()[0],
        }
        write_run(out, emu, records, recorder, finish=lambda summ: {**summ, "emulated": emulated})
        print("simulating the same scenario ...", file=sys.stderr, flush=True)
        run_scenario(emu, out / "simulated", overwrite=True, progress=False)
        fid = fidelity_rows(out, out / "simulated")
        header = (
            f"# Fidelity: {rs.scenario.name}\n\nEmulated (real processes, shaped links, CPU quotas "
            f"{', '.join(f'{q:.3f}' for q in quotas)} of a core; measured before the run, the clients' steps ran as "
            f"fast as {', '.join(f'{q:.3f}' for q in got)} of the machine's full core, the profiles simulated) vs "
            f"simulated; error = simulated / "
            f"emulated - 1. Load average at start {load[0]:.2f}, at end {os.getloadavg()[0]:.2f} "
            f"({cores} cores)."
        )
        write_fidelity(out, fid, header)
        print(fidelity_markdown(fid, header))
        print(f"results in {out}/ (the simulation in {out}/simulated/)")
        return 0
