"""Where two fitted compute frontiers cross, and whether their bootstrap bands allow saying so."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from scipy.optimize import brentq

from tinylm.experiments.exact_math import logspace, percentile
from tinylm.experiments.scaling import BAND, Frontier

REACH = 10.0
"""How far beyond its sampled budgets a frontier is trusted in a comparison (a factor of compute)."""


@dataclass
class Comparison:
    """Two architectures' frontiers on one dataset over the compute range both cover (each extended by REACH).

    verdict: "crossover" (the band of L1 − L2 is clear of zero on both sides of a crossing), "first" or "second"
    (that one's loss is clearly lower somewhere and never clearly higher), or "undecided" (the band spans zero
    everywhere)."""

    dataset: str
    first: str
    second: str
    low: float
    high: float
    verdict: str
    separated: tuple[float, float] | None = None
    """The compute range over which the band of the difference is clear of zero."""
    compute: float | None = None
    interval: tuple[float, float] | None = None
    share: float = 0.0
    """The share of resamples whose frontiers cross between the separated points."""
    lower_first: str | None = None
    """At a crossover: the architecture with the lower loss below it."""
    sampled: tuple[float, float] | None = None
    """The budgets both sampled: a crossover outside them is an extrapolation."""

    @property
    def extrapolated(self) -> bool:
        return self.compute is not None and self.sampled is not None and not (
            self.sampled[0] <= self.compute <= self.sampled[1])


def _root(diff: Callable[[float], float], a: float, b: float) -> float | None:
    """The log10 compute in [a, b] where diff changes sign, or None if it does not."""
    fa, fb = diff(a), diff(b)
    if not (math.isfinite(fa) and math.isfinite(fb)) or fa * fb > 0:
        return None
    return float(brentq(diff, a, b)) if fa != fb else a


def _crossing(one: Frontier, two: Frontier, grid: list[float], ia: int, ib: int) -> tuple[float, list[float]]:
    """The central fit's crossing between grid[ia] and grid[ib] and every resample's (where it crosses there)."""
    a, b = math.log10(grid[ia]), math.log10(grid[ib])
    central = _root(lambda x: one.loss(10 ** x) - two.loss(10 ** x), a, b)
    roots = []
    for s1, s2 in zip(one.samples, two.samples):
        root = _root(lambda x: s1[0] + s1[1] * 10 ** (-s1[2] * x) - s2[0] - s2[1] * 10 ** (-s2[2] * x), a, b)
        if root is not None:
            roots.append(root)
    return (10 ** central if central is not None else math.nan), roots


def compare(one: Frontier, two: Frontier, points: int = 121) -> Comparison | None:
    """The comparison of two fitted frontiers of one dataset; None where either has no fit or their budgets are
    more than REACH² apart."""
    if one.law is None or two.law is None or not one.samples or not two.samples:
        return None
    low = max(min(one.budgets), min(two.budgets)) / REACH
    high = min(max(one.budgets), max(two.budgets)) * REACH
    if low >= high:
        return None
    grid = logspace(math.log10(low), math.log10(high), points)
    n = min(len(one.samples), len(two.samples))
    diffs = [[l1 - l2 for l1, l2 in zip(one.sample_losses(c)[:n], two.sample_losses(c)[:n])] for c in grid]
    below = [percentile(d, BAND[1]) < 0 for d in diffs]
    above = [percentile(d, BAND[0]) > 0 for d in diffs]
    sampled = (max(min(one.budgets), min(two.budgets)), min(max(one.budgets), max(two.budgets)))
    out = Comparison(one.dataset, one.model, two.model, low, high, "undecided", sampled=sampled)
    clear = [i for i in range(points) if below[i] or above[i]]
    if not clear:
        return out
    out.separated = (grid[clear[0]], grid[clear[-1]])
    if not (any(below) and any(above)):
        out.verdict = "first" if any(below) else "second"
        return out
    ia = clear[0]
    ib = next(i for i in clear if below[i] != below[ia])
    central, roots = _crossing(one, two, grid, ia, ib)
    out.verdict, out.compute, out.share = "crossover", central, len(roots) / n
    out.lower_first = one.model if below[ia] else two.model
    if roots:
        out.interval = (10 ** percentile(roots, BAND[0]), 10 ** percentile(roots, BAND[1]))
    return out
