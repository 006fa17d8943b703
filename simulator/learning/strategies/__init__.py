"""The methods' learning rules: one small class per method (Hetero-SplitEE's on `SplitEE` in splitee.py, the
baselines' on `Baseline` in baseline.py), each a `Learner`. Which class a method uses is its registry entry's
(config.registry); `STRATEGIES` reads the registry, importing a class only when it is looked up."""

from __future__ import annotations

from typing import Iterator, Mapping

from simulator.config.registry import REGISTRY
from simulator.learning.strategies.learner import Learner

__all__ = ["STRATEGIES", "Strategy", "Learner"]

Strategy = Learner


class _Learners(Mapping[str, type[Learner]]):
    """Every method's learning class by name, as the registry holds them now (a method registered later counts)."""

    def __getitem__(self, name: str) -> type[Learner]:
        cls = REGISTRY[name].learner_class()
        assert isinstance(cls, type) and issubclass(cls, Learner), f"{name}: {cls!r} is not a Learner"
        return cls

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)


STRATEGIES: Mapping[str, type[Learner]] = _Learners()
