"""The emulated fleet's plumbing: a network namespace per process, veth links shaped with tc htb, shared media as an
access-point namespace, CPU quotas as cgroup-v1 groups; all made by one object and all removed by it."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

__all__ = [
    "LinkPlan",
    "FleetPlan",
    "Fleet",
    "CGROUP_CPU",
    "CFS_PERIOD_US",
    "SHARES",
    "enter_netns",
    "join_cgroup",
    "missing_tools",
]

CGROUP_CPU = Path("/sys/fs/cgroup/cpu")  # the cgroup-v1 cpu controller
CFS_PERIOD_US = 10_000  # 10 ms periods throttle more steadily than the default 100 ms
SHARES = 8192  # 8x the default weight: the emulated processes win over other jobs sharing the cores
_CLONE_NEWNET = 0x40000000
_TIMEOUT_S = 20  # per ip/tc command


@dataclass(frozen=True)
class LinkPlan:
    """One client's link: rates in bit/s at the IP level (what htb counts, Ethernet headers left out)."""

    up_bps: float
    down_bps: float
    medium: str | None = None  # name of the shared medium the client reaches the server through


@dataclass(frozen=True)
class FleetPlan:
    tag: str  # a short prefix for every name made (interfaces have at most 15 characters)
    links: tuple[LinkPlan, ...]
    quotas: tuple[float, ...]  # per client: the share of one core it may use
    media: dict[str, float] = field(default_factory=dict)  # name -> capacity, bit/s


def missing_tools() -> list[str]:
    return [t for t in ("ip", "tc") if shutil.which(t) is None]


def enter_netns(path: str) -> None:
    """Moves the calling process into the network namespace at ``path`` with setns(2) (`ip netns exec` would
    remount /sys and hide the cgroup files)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def join_cgroup(path: str) -> None:
    """Puts the calling process (every thread it starts from now on) into a cgroup-v1 group."""
    (Path(path) / "cgroup.procs").write_text(str(os.getpid()))


def _run(*cmd: str) -> None:
    got = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S)
    if got.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed: {got.stderr.strip() or got.stdout.strip()}")


def _tc(ns: str, args: str) -> None:
    """`tc ARGS` inside network namespace `ns` (ARGS: words separated by single spaces, none empty)."""
    _run("ip", "netns", "exec", ns, "tc", *args.split(" "))


class Fleet:
    """Makes the namespaces, links, shapers and CPU groups of a FleetPlan; `close()` removes all it made, in
    reverse order, and may be called more than once (also after a failure half way)."""

    def __init__(self, plan: FleetPlan) -> None:
        self.plan = plan
        self.namespaces: list[str] = []
        self.cgroups: list[Path] = []  # children first when removed
        t = plan.tag
        self.server_ns = f"{t}s"
        self.client_ns = [f"{t}c{i}" for i in range(len(plan.links))]
        self.media_ns = {name: f"{t}m{j}" for j, name in enumerate(sorted(plan.media))}
        self.cgroup_root = CGROUP_CPU / t
        self.server_addr: list[str] = []  # the server's address as client i sees it
        # Per medium its clients in index order: client i's class in the access point's tree is 1:(10 + its place).
        self.members = {name: [i for i, link in enumerate(plan.links) if link.medium == name] for name in plan.media}

    # --- names -------------------------------------------------------------------------------------
    @staticmethod
    def netns_path(name: str) -> str:
        return f"/run/netns/{name}"

    def client_cgroup(self, i: int) -> str:
        return str(self.cgroup_root / f"c{i}")

    def server_cgroup(self) -> str:
        return str(self.cgroup_root / "server")

    def scheduler_cgroup(self) -> str:
        return str(self.cgroup_root / "sched")

    def uplink_dev(self, i: int) -> str:
        """Client i's uplink interface, in its own namespace (class 1:1 under root 1:)."""
        return f"{self.plan.tag}v{i}"

    def downlink(self, i: int) -> tuple[str, str]:
        """(namespace, interface) of client i's downlink shaper (class 1:1 under root 1:): the server's end of its
        veth, or the access point's on a shared medium."""
        medium = self.plan.links[i].medium
        return (self.server_ns if medium is None else self.media_ns[medium]), f"{self.plan.tag}w{i}"

    def medium_class(self, i: int) -> tuple[str, str, str, float, float] | None:
        """Client i's class in its medium's uplink tree: (namespace, interface, classid, guaranteed rate, the
        medium's capacity), or None off a medium."""
        medium = self.plan.links[i].medium
        if medium is None:
            return None
        j = sorted(self.plan.media).index(medium)
        members = self.members[medium]
        capacity = self.plan.media[medium]
        return (
            self.media_ns[medium],
            f"{self.plan.tag}a{j}",
            f"1:{10 + members.index(i)}",
            capacity / len(members),
            capacity,
        )

    # --- building --------------------------------------------------------------------------------------
    def _ns(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self.namespaces.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")

    def _veth(self, a: str, ns_a: str, b: str, ns_b: str) -> None:
        _run("ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b)
        for ns, dev in ((ns_a, a), (ns_b, b)):
            # One TCP segment per packet, so htb sees 1,514-byte frames, not 64 KiB GSO bursts.
            _run("ip", "-n", ns, "link", "set", "dev", dev, "gso_max_segs", "1")

    def _addr(self, ns: str, dev: str, cidr: str) -> None:
        _run("ip", "-n", ns, "addr", "add", cidr, "dev", dev)
        _run("ip", "-n", ns, "link", "set", "dev", dev, "up")

    def _shape(self, ns: str, dev: str, bps: float) -> None:
        # stab overhead -14: htb counts IP packets (1,500 bytes), not Ethernet frames (1,514), so the link's rate
        # is the IP-level rate a profile's TCP/IPv4 framing assumes.
        _tc(ns, f"qdisc add dev {dev} root handle 1: stab overhead -14 linklayer ethernet htb default 1")
        rate = f"{int(round(bps))}bit"
        _tc(ns, f"class add dev {dev} parent 1: classid 1:1 htb rate {rate} ceil {rate} quantum 1514")

    def _shared(self, ns: str, dev: str, capacity: float, members: Sequence[tuple[str, float]]) -> None:
        """One htb tree for a medium's uplink: the capacity shared by its clients (matched by source address),
        each guaranteed an equal share and allowed up to min(capacity, its own rate)."""
        cap = f"{int(round(capacity))}bit"
        _tc(ns, f"qdisc add dev {dev} root handle 1: stab overhead -14 linklayer ethernet htb")
        _tc(ns, f"class add dev {dev} parent 1: classid 1:1 htb rate {cap} ceil {cap} quantum 1514")
        share = capacity / max(1, len(members))
        for k, (src, bps) in enumerate(members):  # in client index order, as medium_class() counts them
            cls = f"1:{10 + k}"
            ceil = f"{int(round(min(capacity, bps)))}bit"
            _tc(
                ns,
                f"class add dev {dev} parent 1:1 classid {cls} htb rate {int(round(share))}bit ceil {ceil} "
                "quantum 1514",
            )
            _tc(ns, f"filter add dev {dev} parent 1: protocol ip prio 1 u32 match ip src {src}/32 flowid {cls}")

    def _cgroup(self, path: Path, quota: float | None) -> None:
        path.mkdir()
        self.cgroups.insert(0, path)
        (path / "cpu.shares").write_text(str(SHARES if path != self.cgroup_root else 8 * SHARES))
        (path / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
        if quota is not None:
            (path / "cpu.cfs_quota_us").write_text(str(max(1000, int(round(quota * CFS_PERIOD_US)))))

    def open(self) -> "Fleet":
        plan, t = self.plan, self.plan.tag
        self._ns(self.server_ns)
        for name, ns in self.media_ns.items():
            j = sorted(plan.media).index(name)
            self._ns(ns)
            _run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            a, s = f"{t}a{j}", f"{t}s{j}"
            self._veth(a, ns, s, self.server_ns)
            self._addr(ns, a, f"10.203.{j}.2/24")
            self._addr(self.server_ns, s, f"10.203.{j}.1/24")
            self._shape(self.server_ns, s, plan.media[name])  # the medium's downlink
        members: dict[str, list[tuple[str, float]]] = {name: [] for name in plan.media}
        for i, (link, ns) in enumerate(zip(plan.links, self.client_ns)):
            self._ns(ns)
            v, w = f"{t}v{i}", f"{t}w{i}"
            if link.medium is None:
                self._veth(v, ns, w, self.server_ns)
                self._addr(ns, v, f"10.201.{i}.2/24")
                self._addr(self.server_ns, w, f"10.201.{i}.1/24")
                self._shape(self.server_ns, w, link.down_bps)
                self.server_addr.append(f"10.201.{i}.1")
            else:
                ap = self.media_ns[link.medium]
                j = sorted(plan.media).index(link.medium)
                self._veth(v, ns, w, ap)
                self._addr(ns, v, f"10.202.{i}.2/24")
                self._addr(ap, w, f"10.202.{i}.1/24")
                _run("ip", "-n", ns, "route", "add", "default", "via", f"10.202.{i}.1")
                _run("ip", "-n", self.server_ns, "route", "add", f"10.202.{i}.0/24", "via", f"10.203.{j}.2")
                self._shape(ap, w, link.down_bps)
                members[link.medium].append((f"10.202.{i}.2", link.up_bps))
                self.server_addr.append(f"10.203.{j}.1")
            self._shape(ns, v, link.up_bps)
        for name, ns in self.media_ns.items():
            j = sorted(plan.media).index(name)
            self._shared(ns, f"{t}a{j}", plan.media[name], members[name])
        self._cgroup(self.cgroup_root, None)
        self._cgroup(Path(self.server_cgroup()), None)  # the server: one core's worth, weighted high
        self._cgroup(Path(self.scheduler_cgroup()), None)  # changes links and quotas on time: weighted high too
        for i, q in enumerate(plan.quotas):
            self._cgroup(Path(self.client_cgroup(i)), q)
        return self

    def close(self) -> list[str]:
        """Removes every group and namespace made (their veths and shapers go with them); returns what could not
        be removed, as messages."""
        problems = []
        for path in list(self.cgroups):
            try:
                for pid in (path / "cgroup.procs").read_text().split():  # left-overs go back to the root group
                    (CGROUP_CPU / "cgroup.procs").write_text(pid)
                path.rmdir()
                self.cgroups.remove(path)
            except OSError as err:
                problems.append(f"cgroup {path}: {err}")
        for name in reversed(list(self.namespaces)):
            try:
                _run("ip", "netns", "del", name)
                self.namespaces.remove(name)
            except (RuntimeError, subprocess.TimeoutExpired) as err:
                problems.append(f"netns {name}: {err}")
        return problems

    def __enter__(self) -> "Fleet":
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
