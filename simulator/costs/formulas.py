"""Pure cost functions: seconds of compute and transfer, bytes on the wire, joules per device state."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

__all__ = [
    "IDLE_STATE",
    "LABEL_BYTES",
    "compute_seconds",
    "step_seconds",
    "feature_batch_bytes",
    "framed_bytes",
    "wire_bytes",
    "payload_seconds",
    "radio_seconds",
    "power_above_idle_w",
    "drawn_j",
    "energy_by_state_j",
    "energy_j",
    "RESULT_BYTES",
    "InferenceCosts",
    "inference_sample_costs",
]

IDLE_STATE = "idle"  # key of the always-on share in energy_by_state_j
LABEL_BYTES = 8  # one label per sample travels with the features, as an int64


def compute_seconds(flops: float, flops_per_s: float) -> float:
    """Seconds to run ``flops`` floating-point operations at a sustained ``flops_per_s``."""
    if flops < 0:
        raise ValueError(f"flops must be >= 0, got {flops}")
    if flops_per_s <= 0:
        raise ValueError(f"flops_per_s must be > 0, got {flops_per_s}")
    return flops / flops_per_s


def step_seconds(
    fwd_flops_per_sample: float, bwd_flops_per_sample: float, batch_size: int, flops_per_s: float
) -> float:
    """Seconds for one training step (forward + backward) over one batch."""
    return compute_seconds((fwd_flops_per_sample + bwd_flops_per_sample) * batch_size, flops_per_s)


def feature_batch_bytes(
    activation_bytes_per_sample: float, batch_size: int, label_bytes_per_sample: float = LABEL_BYTES
) -> float:
    """Payload bytes of one feature message (h, y): the activations plus one label per sample."""
    if activation_bytes_per_sample < 0 or label_bytes_per_sample < 0 or batch_size < 0:
        raise ValueError("bytes per sample and batch size must be >= 0")
    return float((activation_bytes_per_sample + label_bytes_per_sample) * batch_size)


def _check_loss(loss_rate: float) -> None:
    if not 0.0 <= loss_rate < 1.0:
        raise ValueError(f"loss_rate must be in [0, 1), got {loss_rate}")


def framed_bytes(payload_bytes: float, framing: tuple[float, float] | None) -> float:
    """Bytes of one message on the wire with its protocol headers: ceil(payload / payload per packet) packets,
    each adding (packet bytes − payload bytes). ``framing`` None: the payload alone (no overhead)."""
    if framing is None:
        return payload_bytes
    packet, payload = framing
    if not 0 < payload <= packet:
        raise ValueError(f"framing needs 0 < payload bytes <= packet bytes, got {framing}")
    return payload_bytes + math.ceil(payload_bytes / payload) * (packet - payload)


def wire_bytes(payload_bytes: float, loss_rate: float, framing: tuple[float, float] | None = None) -> float:
    """Bytes actually sent for ``payload_bytes`` of payload: the framed message (see framed_bytes), and lost packets
    are resent whole, so framed / (1 - loss_rate)."""
    if payload_bytes < 0:
        raise ValueError(f"payload_bytes must be >= 0, got {payload_bytes}")
    _check_loss(loss_rate)
    return framed_bytes(payload_bytes, framing) / (1.0 - loss_rate)


def payload_seconds(
    payload_bytes: float, bps: float, loss_rate: float = 0.0, framing: tuple[float, float] | None = None
) -> float:
    """Seconds the radio is busy sending ``payload_bytes`` at ``bps`` bit/s, headers and retransmissions included."""
    if bps <= 0:
        raise ValueError(f"bps must be > 0, got {bps}")
    return wire_bytes(payload_bytes, loss_rate, framing) * 8.0 / bps


def radio_seconds(
    payload_bytes: float,
    bps: float,
    loss_rate: float = 0.0,
    framing: tuple[float, float] | None = None,
    cpu_s_per_byte: float = 0.0,
) -> float:
    """Seconds one message holds a private link: payload_seconds, or longer if the device's processor cannot
    push (or take) its wire bytes that fast (``cpu_s_per_byte`` × wire bytes). With no CPU cost it is
    payload_seconds exactly."""
    busy = payload_seconds(payload_bytes, bps, loss_rate, framing)
    if not cpu_s_per_byte:
        return busy
    if cpu_s_per_byte < 0:
        raise ValueError(f"cpu_s_per_byte must be >= 0, got {cpu_s_per_byte}")
    return max(busy, cpu_s_per_byte * wire_bytes(payload_bytes, loss_rate, framing))


def power_above_idle_w(draw_w: float, idle_w: float) -> float:
    """Power a state adds on top of the idle draw, from the device's total draw with that state alone active."""
    return draw_w - idle_w


def drawn_j(power_w: float, seconds: float) -> float:
    """Joules drawn at a constant ``power_w`` over ``seconds``: an idle share (idle_w), an active state's share
    (its power above idle), or a whole draw (idle_w plus what is active)."""
    return power_w * seconds


def energy_by_state_j(
    state_seconds: Mapping[str, float], added_w: Mapping[str, float], idle_w: float, total_s: float
) -> dict[str, float]:
    """Joules split into an ``"idle"`` share and one share per active state; the shares sum to ``energy_j``.

    The device draws ``idle_w`` for the whole window ``total_s`` (the idle share); each active state ``s``
    (compute, tx, rx, ...) adds ``added_w[s]`` on top for the ``state_seconds[s]`` it is active. States may
    overlap in time: each adds its own power, so computing (4 W above idle) while sending (1 W above idle) on a
    1 W-idle device draws 1 + 4 + 1 = 6 W. A radio's powers are such added powers; a processor's is its total
    draw while computing less idle (``power_above_idle_w``). States listed in ``added_w`` but not in
    ``state_seconds`` were never active.
    """
    if total_s < 0:
        raise ValueError(f"total_s must be >= 0, got {total_s}")
    if IDLE_STATE in state_seconds:
        raise ValueError(f"{IDLE_STATE!r} is implied by total_s and must not be listed as an active state")
    # Busy intervals summed by the caller may overshoot the window by rounding; anything more is a bookkeeping error.
    slack = 1e-9 * max(1.0, total_s)
    shares = {IDLE_STATE: drawn_j(idle_w, total_s)}
    for state, seconds in state_seconds.items():
        if state not in added_w:
            raise ValueError(f"no power given for state {state!r}")
        if seconds < 0 or seconds > total_s + slack:
            raise ValueError(f"state {state!r} lasts {seconds} s, outside the window [0, {total_s}] s")
        shares[state] = drawn_j(added_w[state], seconds)
    return shares


def energy_j(
    state_seconds: Mapping[str, float],
    added_w: Mapping[str, float],
    idle_w: float,
    total_s: float,
    *,
    used_j: float = 0.0,
) -> float:
    """Joules used by the end of a window of ``total_s`` seconds: used_j + idle_w·total_s + Σ_s added_w[s]·t_s.

    See ``energy_by_state_j`` for the model; this adds its shares to ``used_j`` (what was used before the
    window) one after another, in that order.
    """
    total = used_j
    for share in energy_by_state_j(state_seconds, added_w, idle_w, total_s).values():
        total += share
    return total


RESULT_BYTES = 8  # an inference answer returned by the server: one class index, as an int64


@dataclass(frozen=True)
class InferenceCosts:
    """Latency and energy of one test sample at batch size 1: what every sample pays, and what offloading adds.

    ``local_*`` is paid by every sample (client forward through its exit); ``offload_extra_*`` only by samples
    whose exit is not confident enough and go on to the server. Energies are joules of the device and the server
    together.
    """

    local_s: float
    local_j: float
    offload_extra_s: float
    offload_extra_j: float

    def _check_rate(self, exit_rate: float) -> None:
        if not 0.0 <= exit_rate <= 1.0:
            raise ValueError(f"exit_rate must be in [0, 1], got {exit_rate}")

    def mean_latency_s(self, exit_rate: float) -> float:
        """Mean seconds per sample when a fraction ``exit_rate`` exits locally: local + (1 − rate) · offload."""
        self._check_rate(exit_rate)
        return self.local_s + (1.0 - exit_rate) * self.offload_extra_s

    def mean_energy_j(self, exit_rate: float) -> float:
        """Mean joules per sample when a fraction ``exit_rate`` exits locally: local + (1 − rate) · offload."""
        self._check_rate(exit_rate)
        return self.local_j + (1.0 - exit_rate) * self.offload_extra_j


def inference_sample_costs(
    *,
    client_flops: float,
    server_flops: float,
    activation_bytes: float,
    client_flops_per_s: float,
    client_compute_w: float,
    client_idle_w: float,
    tx_w: float,
    rx_w: float,
    uplink_bps: float,
    downlink_bps: float,
    latency_s: float,
    loss_rate: float,
    server_flops_per_s: float,
    server_compute_w: float,
    result_bytes: float = RESULT_BYTES,
    framing: tuple[float, float] | None = None,
) -> InferenceCosts:
    """Per-sample inference costs (batch size 1) of a client with its exit, from plain numbers.

    Local, every sample: ``client_flops`` (body u1..u_cut and exit head) at ``client_flops_per_s``, drawing
    ``client_compute_w`` (the device's total draw while computing).

    Offloaded samples, in sequence: the uplink sends one sample's activation (``activation_bytes``; no label
    travels at inference) — radio busy for ``payload_seconds``, then ``latency_s`` in flight; the server runs
    ``server_flops`` at ``server_flops_per_s`` drawing ``server_compute_w``; the downlink returns the answer
    (``result_bytes``) — busy, then ``latency_s``. Jitter is left out: latencies are the link's base one-way
    latency, not a draw (a half-normal jitter would add jitter_s·√(2/π) per direction on average). The link is
    taken as the sample's alone (no shared-medium contention, no queueing at the server).

    Offload energy: the device draws idle_w for the whole offload (it waits for the answer, so waiting is
    counted), plus ``tx_w`` while its radio sends and ``rx_w`` while it receives (radio powers add on top of
    idle, as in the recorder); i.e. (idle+tx)·uplink busy + (idle+rx)·downlink busy + idle·(2·latency + server
    seconds). The server adds ``server_compute_w`` × its seconds; its idle draw outside is not charged to inference.
    """
    local_s = compute_seconds(client_flops, client_flops_per_s)
    up_busy_s = payload_seconds(activation_bytes, uplink_bps, loss_rate, framing)
    down_busy_s = payload_seconds(result_bytes, downlink_bps, loss_rate, framing)
    server_s = compute_seconds(server_flops, server_flops_per_s)
    if latency_s < 0:
        raise ValueError(f"latency_s must be >= 0, got {latency_s}")
    offload_s = up_busy_s + latency_s + server_s + down_busy_s + latency_s
    device_j = energy_j({"tx": up_busy_s, "rx": down_busy_s}, {"tx": tx_w, "rx": rx_w}, client_idle_w, offload_s)
    return InferenceCosts(
        local_s=local_s,
        local_j=drawn_j(client_compute_w, local_s),
        offload_extra_s=offload_s,
        offload_extra_j=device_j + drawn_j(server_compute_w, server_s),
    )
