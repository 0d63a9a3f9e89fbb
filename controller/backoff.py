"""How long a key waits before its next try after consecutive failures."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, per key.

    The jitter only shortens the wait (a factor in [1 - jitter, 1]): many sites failing together, e.g.
    when Docker restarts, spread out instead of retrying in lockstep, and no wait ever exceeds `cap`.
    Tenacity's wait strategies need a RetryCallState around a single call; a work queue retries keys
    across many calls, so the few lines of arithmetic live here.
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={self.base} cap={self.cap}")
        if self.factor < 1:
            raise ValueError(f"backoff factor must be at least 1, got {self.factor}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"backoff jitter must be in [0, 1), got {self.jitter}")

    def ceiling(self, failures: int) -> float:
        """The wait after `failures` consecutive failures, before jitter."""
        if failures < 1:
            return 0.0
        # Bounded exponent: 2.0 ** 2000 overflows a float long before the cap matters.
        exponent = min(failures - 1, 64)
        return float(min(self.cap, self.base * self.factor**exponent))

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        ceiling = self.ceiling(failures)
        source = rng if rng is not None else random
        return ceiling * source.uniform(1.0 - self.jitter, 1.0)
