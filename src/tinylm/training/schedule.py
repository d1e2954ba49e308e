"""Learning-rate schedules as pure functions."""

from __future__ import annotations

import math


def learning_rate(
    step: int, progress: float, peak: float, warmup_steps: int, min_ratio: float, kind: str = "cosine",
    decays: int = 0, factor: float = 0.25,
) -> float:
    """Linear warm-up over `warmup_steps`, then decay with `progress` (0 -> 1 over the budget) to peak*min_ratio.

    Args:
        step: optimizer steps taken so far.
        progress: fraction of the training budget used, in [0, 1].
        peak: the learning rate at the end of warm-up.
        warmup_steps: steps of linear warm-up.
        min_ratio: the floor as a fraction of `peak`.
        kind: "cosine", "linear" or "constant" decay, or "plateau": peak * factor**decays, where `decays` counts
            the plateaus of the validation curve so far (the trainer's).
    """
    if warmup_steps and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    p = min(max(progress, 0.0), 1.0)
    floor = peak * min_ratio
    if kind == "constant":
        return peak
    if kind == "plateau":
        return peak * factor**decays
    if kind == "linear":
        return floor + (peak - floor) * (1.0 - p)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * p))
