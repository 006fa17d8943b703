"""What emulated processes say to each other over TCP: framed messages of tensors, the time a message has left the
sender, and a delay line that adds a link's latency at the receiver."""

from __future__ import annotations

import fcntl
import heapq
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = [
    "Message",
    "send_message",
    "recv_message",
    "wait_drained",
    "DelayLine",
    "pack_tensors",
    "unpack_into",
    "unpack_tensors",
    "payload_bytes",
    "now",
]

_HEAD = struct.Struct("!II")  # JSON header length, payload length
_SIOCOUTQ = 0x5411  # TIOCOUTQ: bytes in the socket's send queue, not yet acknowledged by the receiver
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64, "uint8": torch.uint8}


def now() -> float:
    """CLOCK_MONOTONIC seconds: one clock for every process on this machine, whatever its network namespace."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


@dataclass
class Message:
    """One message: a small JSON header (`kind` and anything else) and a payload of raw tensor bytes."""

    kind: str
    meta: dict[str, Any] = field(default_factory=dict)
    payload: bytes = b""
    t_received: float = 0.0  # the receiver's clock when its last byte was read


def send_message(sock: socket.socket, msg: Message) -> None:
    """Header and payload in one sendall (blocks while the socket's buffer is full)."""
    head = json.dumps({"kind": msg.kind, **msg.meta}).encode()
    sock.sendall(_HEAD.pack(len(head), len(msg.payload)) + head + msg.payload)


def _read(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError("the peer closed the connection")
        got += k
        _quickack(sock)
    return bytes(buf)


def _quickack(sock: socket.socket) -> None:
    """Acknowledges at once. A socket that also sends (the server answers a client's upload with the aggregate and
    the next round's start) falls into Linux's interactive mode, which delays ACKs up to 40 ms; the sender's
    message counts as sent only when its last byte is acknowledged (wait_drained), so a delayed ACK would make a
    transfer ~40 ms longer than the link. The flag does not stay set: it is renewed after every read."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    except OSError:  # not a TCP socket
        pass


def recv_message(sock: socket.socket) -> Message:
    """The next message; `t_received` is when its last byte arrived."""
    head_len, pay_len = _HEAD.unpack(_read(sock, _HEAD.size))
    meta = json.loads(_read(sock, head_len))
    payload = _read(sock, pay_len) if pay_len else b""
    return Message(meta.pop("kind"), meta, payload, now())


def wait_drained(sock: socket.socket, timeout_s: float, poll_s: float = 2e-4) -> float:
    """Waits until the receiver has acknowledged every byte written to ``sock`` (the send queue is empty): on a
    link with no delay of its own, the moment the last bit left the shaped radio. Returns that time."""
    fd = sock.fileno()
    deadline = now() + timeout_s
    buf = bytearray(4)
    while True:
        fcntl.ioctl(fd, _SIOCOUTQ, buf)
        t = now()
        if int.from_bytes(buf, "little") == 0:
            return t
        if t > deadline:
            raise TimeoutError(f"the send queue did not drain within {timeout_s:.0f} s")
        time.sleep(poll_s)


def pack_tensors(tensors: Sequence[torch.Tensor]) -> tuple[list[list[Any]], bytes]:
    """(their dtypes and shapes, their bytes back to back): what a message carries."""
    specs, parts = [], []
    for t in tensors:
        t = t.detach().contiguous().cpu()
        specs.append([str(t.dtype).removeprefix("torch."), list(t.shape)])
        parts.append(t.numpy().tobytes())
    return specs, b"".join(parts)


def payload_bytes(tensors: Sequence[torch.Tensor]) -> int:
    """Bytes pack_tensors puts on the wire for ``tensors`` (numel × element size)."""
    return sum(t.numel() * t.element_size() for t in tensors)


def unpack_tensors(specs: list[list[Any]], data: bytes) -> list[torch.Tensor]:
    """The tensors of a message, each a copy that owns its memory."""
    out, pos = [], 0
    for dtype_name, shape in specs:
        dtype = _DTYPES[dtype_name]
        n = int(np.prod(shape)) if shape else 1
        size = n * torch.empty((), dtype=dtype).element_size()
        flat = torch.frombuffer(bytearray(data[pos : pos + size]), dtype=dtype) if size else torch.empty(0, dtype=dtype)
        out.append(flat.view(shape))
        pos += size
    if pos != len(data):
        raise ValueError(f"message carries {len(data)} bytes, its tensors {pos}")
    return out


@torch.no_grad()
def unpack_into(targets: Sequence[torch.Tensor], specs: list[list[Any]], data: bytes) -> None:
    """Copies a message's tensors into ``targets`` (same shapes), in place."""
    got = unpack_tensors(specs, data)
    if len(got) != len(targets):
        raise ValueError(f"message carries {len(got)} tensors, expected {len(targets)}")
    for t, g in zip(targets, got):
        t.copy_(g.view_as(t))


class DelayLine:
    """Hands messages on `delay_s` after they were received: the link's one-way latency, added in user space
    (this kernel has no netem). One thread; messages leave in the order they are due."""

    def __init__(self, deliver: Callable[[Message, float], None]) -> None:
        self._deliver = deliver  # (message, delivery time)
        self._heap: list[tuple[float, int, Message]] = []
        self._cv = threading.Condition()
        self._seq = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def put(self, msg: Message, delay_s: float) -> None:
        with self._cv:
            heapq.heappush(self._heap, (msg.t_received + delay_s, self._seq, msg))
            self._seq += 1
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._heap and not self._closed:
                    self._cv.wait()
                if self._closed and not self._heap:
                    return
                due = self._heap[0][0]
                wait = due - now()
                if wait > 0:
                    self._cv.wait(min(wait, 0.05))
                    continue
                _, _, msg = heapq.heappop(self._heap)
            self._deliver(msg, due)
