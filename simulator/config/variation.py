"""How a link, a device or a shared medium changes during a run: the `variation:` key of a profile or a medium.

trace     a CSV of `t_s` and the fields that change, piecewise constant (config.condition_traces)
markov    named states, each with factors on the fields and a mean dwell time (exponential), e.g. a
          Gilbert–Elliott good/bad channel; every client draws its own chain
throttle  (devices) after `after_s` of compute the speed drops to `factor` until `cool_s` of idle
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "FIELDS",
    "TraceVariation",
    "MarkovState",
    "MarkovVariation",
    "ThrottleVariation",
    "Variation",
    "check_fields",
]

# The fields a variation may change, by what it is attached to. A trace gives their values; a Markov state a factor
# on the profile's value. `speed` is a factor on every compute rate of a device.
FIELDS: dict[str, tuple[str, ...]] = {
    "link": ("uplink_bps", "downlink_bps", "latency_s", "loss_rate"),
    "device": ("speed",),
    "medium": ("capacity_bps",),
}


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TraceVariation(_Cfg):
    kind: Literal["trace"]
    file: str = Field(min_length=1)  # CSV: t_s, then the fields that change; relative to the scenario file or
    # the shipped device_profiles/traces/
    after_end: Literal["hold", "repeat"] = "hold"  # after the last row: keep its values, or start over
    # Where in the trace the run starts, s; `random`: drawn per client from its own stream (a fleet entry of
    # many clients then does not change in lock-step)
    offset: Annotated[float, Field(ge=0)] | Literal["random"] = 0.0


class MarkovState(_Cfg):
    dwell_s: float = Field(gt=0)  # mean time in this state (exponential), s
    # Factors on the profile's value while in this state (absent: 1).
    uplink_bps: float | None = Field(default=None, ge=0)
    downlink_bps: float | None = Field(default=None, ge=0)
    latency_s: float | None = Field(default=None, ge=0)
    loss_rate: float | None = Field(default=None, ge=0)
    speed: float | None = Field(default=None, ge=0)
    capacity_bps: float | None = Field(default=None, ge=0)
    # Where the chain goes when it leaves this state: {state: probability}; absent: uniformly to another state.
    next: dict[str, Annotated[float, Field(ge=0)]] | None = None

    def factors(self) -> dict[str, float]:
        return {
            k: v
            for k in ("uplink_bps", "downlink_bps", "latency_s", "loss_rate", "speed", "capacity_bps")
            if (v := getattr(self, k)) is not None
        }


class MarkovVariation(_Cfg):
    kind: Literal["markov"]
    states: dict[str, MarkovState] = Field(min_length=2)
    start: str = "stationary"  # a state's name, or `stationary`: drawn from the chain's long-run shares

    @model_validator(mode="after")
    def _consistent(self) -> "MarkovVariation":
        names = list(self.states)
        if self.start != "stationary" and self.start not in self.states:
            raise ValueError(f"start '{self.start}' is not a state (states: {', '.join(names)}; or stationary)")
        for name, st in self.states.items():
            if st.next is None:
                continue
            unknown = [k for k in st.next if k not in self.states]
            if unknown:
                raise ValueError(f"state '{name}': next names no state '{unknown[0]}' (states: {', '.join(names)})")
            total = sum(st.next.values())
            if abs(total - 1.0) > 1e-9:
                raise ValueError(f"state '{name}': the probabilities in next sum to {total:g}, not 1")
        return self


class ThrottleVariation(_Cfg):
    kind: Literal["throttle"]
    after_s: float = Field(gt=0)  # seconds of compute without a cool-down before the speed drops
    factor: float = Field(gt=0, le=1)  # the speed while throttled, as a share of the full speed
    cool_s: float = Field(gt=0)  # idle seconds that bring the processor back to full speed


Variation = Annotated[Union[TraceVariation, MarkovVariation, ThrottleVariation], Field(discriminator="kind")]


def check_fields(variation: Variation | None, what: str) -> None:
    """Raises ValueError if a Markov state sets a field that a `what` (link, device, medium) does not have, or a
    throttle is put on anything but a device. Trace columns are checked when the file is read."""
    if variation is None:
        return
    allowed = FIELDS[what]
    if isinstance(variation, ThrottleVariation) and what != "device":
        raise ValueError(f"a throttle varies a device's speed; a {what} takes kind trace or markov")
    if isinstance(variation, MarkovVariation):
        for name, st in variation.states.items():
            bad = [k for k in st.factors() if k not in allowed]
            if bad:
                raise ValueError(
                    f"state '{name}': a {what} has no field '{bad[0]}' to vary (it varies {', '.join(allowed)})"
                )
