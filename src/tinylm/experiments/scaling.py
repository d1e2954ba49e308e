"""Iso-FLOP scaling fits: per training-FLOP budget a parabola of validation loss in log N gives the best size N*(C)
and its loss L*(C) (Hoffmann et al. 2022, approach 2); per architecture L*(C) = E + A·C^(−α) (Kaplan et al. 2020)
and N*(C) ∝ C^a, with percentile bands from a bootstrap that resamples the runs within each budget.

Everything is computed in Python floats with a generator seeded per fit (`exact_math`): the same runs give the same
fits, bands and figures on every machine and at every thread count."""

from __future__ import annotations

import math
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from tinylm.experiments.exact_math import (
    SplitMix64,
    exp,
    levenberg_marquardt,
    logit,
    percentile,
    polyfit,
    sigmoid,
)

RESAMPLES = 200
SEED = 16
BAND = (2.5, 97.5)
"""Percentiles of the bootstrap bands and intervals (95%)."""
MIN_BUDGETS = 3
"""A power law E + A·C^(−α) has three parameters: it needs three budgets whose minimum was sampled."""
ALPHA_MAX = 3.0
LOG_FLOAT_MAX = math.log(sys.float_info.max)
"""Past this, e^x is no float: a compute that large is never reached."""

Sample = tuple[float, float, float, float]
"""One bootstrap resample's fit: E, A, α and the N* exponent a (nan where its size law could not be fitted)."""


@dataclass
class IsoFlop:
    """One budget's parabola: loss = c2·x² + c1·x + c0 with x = log10(params)."""

    budget: float
    params: list[float]
    losses: list[float]
    coeffs: tuple[float, float, float] | None
    n_star: float | None
    l_star: float | None
    under_sampled: bool
    """The minimum is at or beyond the edge of the sampled sizes (or the points curve the wrong way)."""


def fit_parabola(budget: float, params: list[float], losses: list[float]) -> IsoFlop:
    """The parabola of loss in log10 N through one budget's runs; its vertex is (N*, L*) when it lies strictly
    inside the sampled sizes, else the budget is flagged under-sampled (and has no N*, L*)."""
    x = [math.log10(p) for p in params]
    coeffs = polyfit(x, [float(v) for v in losses], 2)
    if coeffs is None:
        return IsoFlop(budget, list(params), list(losses), None, None, None, True)
    c2, c1, c0 = coeffs
    vertex = -c1 / (2 * c2) if c2 > 0 else math.nan
    if not (c2 > 0 and min(x) < vertex < max(x)):
        return IsoFlop(budget, list(params), list(losses), (c2, c1, c0), None, None, True)
    return IsoFlop(budget, list(params), list(losses), (c2, c1, c0), 10 ** vertex,
                   c0 - c1 * c1 / (4 * c2), False)


def _power_law_residuals(x: list[float], y: list[float], floor: float):
    """Residuals and Jacobian of E + e^(log A − α·x) − y in the unbounded parameters (u, log A, v) with
    E = floor·σ(u) and α = ALPHA_MAX·σ(v), so that 0 < E < floor and 0 < α < ALPHA_MAX."""
    def fun(p: list[float]) -> tuple[list[float], list[list[float]]]:
        su, sv = sigmoid(p[0]), sigmoid(p[2])
        e, alpha = floor * su, ALPHA_MAX * sv
        terms = [exp(p[1] - alpha * xi) for xi in x]
        r = [e + t - yi for t, yi in zip(terms, y)]
        jac = [[floor * su * (1 - su), t, -t * xi * ALPHA_MAX * sv * (1 - sv)] for t, xi in zip(terms, x)]
        return r, jac
    return fun


def fit_power_law(budgets: Sequence[float], losses: Sequence[float],
                  start: tuple[float, float, float] | None = None) -> tuple[float, float, float] | None:
    """(E, A, α) of L = E + A·C^(−α) by least squares (Levenberg–Marquardt), with E = min L·σ(u) and α = 3·σ(v)
    so that 0 < E < min L and 0 < α < 3; from a few starting floors, or from `start` (a nearby fit) and no floor.
    None with fewer than three points."""
    if len(budgets) < MIN_BUDGETS:
        return None
    logs = [math.log(c) for c in budgets]
    mean_log = math.fsum(logs) / len(logs)
    x, y, floor = [v - mean_log for v in logs], [float(v) for v in losses], min(losses)
    starts = []
    for e0 in ((0.0,) if start else (0.0, 0.5, 0.9)):
        gap = [max(v - e0 * floor, 1e-6) for v in y]
        line = polyfit(x, [math.log(g) for g in gap], 1)
        slope = -line[0] if line is not None else 0.5
        starts.append([logit(e0), math.log(math.fsum(gap) / len(gap)), logit(slope / ALPHA_MAX)])
    if start:
        e, a, alpha = start
        starts.append([logit(e / floor), math.log(a) - alpha * mean_log, logit(alpha / ALPHA_MAX)])
    fun = _power_law_residuals(x, y, floor)
    fits = [levenberg_marquardt(fun, p0) for p0 in starts]
    (u, log_a, v), _ = min(fits, key=lambda fit: fit[1])  # the first of equal costs: a fixed order
    alpha = ALPHA_MAX * sigmoid(v)
    return floor * sigmoid(u), exp(log_a + alpha * mean_log), alpha


def fit_size_law(budgets: Sequence[float], n_stars: Sequence[float]) -> tuple[float, float] | None:
    """(k, a) of N*(C) = k·C^a, a line in log-log; None with fewer than two points."""
    line = polyfit([math.log10(b) for b in budgets], [math.log10(n) for n in n_stars], 1) if len(budgets) >= 2 \
        else None
    if line is None:
        return None
    a, log_k = line
    return 10 ** log_k, a


@dataclass
class Frontier:
    """The fitted compute frontier of one architecture on one dataset, with its bootstrap resamples."""

    dataset: str
    model: str
    isoflops: list[IsoFlop]
    law: tuple[float, float, float] | None
    """(E, A, α) of L*(C) = E + A·C^(−α), None when fewer than three budgets have their minimum sampled."""
    size_law: tuple[float, float] | None
    """(k, a) of N*(C) = k·C^a."""
    samples: list[Sample] = field(default_factory=list)
    """One row per successful resample: E, A, α, a."""
    resamples: int = 0
    rejected: str = ""
    """Why a law fitted to the budgets was not kept (e.g. α at the bound of its range)."""

    @property
    def budgets(self) -> list[float]:
        return [iso.budget for iso in self.isoflops]

    def loss(self, compute: float) -> float:
        """The fitted L*(C)."""
        e, a, alpha = self.law  # type: ignore[misc]
        return e + a * compute ** -alpha

    def sample_losses(self, compute: float) -> list[float]:
        """L*(C) of every resample."""
        return [e + a * compute ** -alpha for e, a, alpha, _ in self.samples]

    def band(self, compute: Sequence[float]) -> tuple[list[float], list[float]]:
        """The percentile band of L*(C) over the resamples, at each compute."""
        rows = [self.sample_losses(c) for c in compute]
        return [percentile(r, BAND[0]) for r in rows], [percentile(r, BAND[1]) for r in rows]

    def interval(self, column: int) -> tuple[float, float]:
        """The percentile interval of E (0), A (1), α (2) or the N* exponent a (3)."""
        values = [s[column] for s in self.samples if math.isfinite(s[column])]
        if not values:
            return math.nan, math.nan
        return percentile(values, BAND[0]), percentile(values, BAND[1])


def _usable(isoflops: list[IsoFlop]) -> list[IsoFlop]:
    return [iso for iso in isoflops if not iso.under_sampled]


def _fit_laws(isoflops: list[IsoFlop], start: tuple[float, float, float] | None = None
              ) -> tuple[tuple[float, float, float] | None, tuple[float, float] | None]:
    usable = _usable(isoflops)
    if len(usable) < MIN_BUDGETS:
        return None, None
    budgets = [iso.budget for iso in usable]
    return (fit_power_law(budgets, [iso.l_star for iso in usable], start),  # type: ignore[misc]
            fit_size_law(budgets, [iso.n_star for iso in usable]))  # type: ignore[misc]


def _resample(iso: IsoFlop, rng: SplitMix64) -> IsoFlop:
    """One bootstrap draw of a budget's runs (with replacement), redrawn while it holds fewer than three distinct
    sizes (a parabola needs three); repeated runs weigh as often as they are drawn."""
    n = len(iso.params)
    for _ in range(100):
        pick = [rng.below(n) for _ in range(n)]
        if len({iso.params[i] for i in pick}) >= 3:
            break
    return fit_parabola(iso.budget, [iso.params[i] for i in pick], [iso.losses[i] for i in pick])


def fit_seed(dataset: str, model: str, seed: int = SEED) -> int:
    """The bootstrap's seed of one fit: fixed, and its own for every dataset and architecture."""
    return seed ^ zlib.crc32(f"{dataset}/{model}".encode())


def bootstrap(isoflops: list[IsoFlop], start: tuple[float, float, float], resamples: int = RESAMPLES,
              seed: int = SEED) -> list[Sample]:
    """(E, A, α, a) of every resample whose refitted parabolas leave three budgets with a sampled minimum (each
    power law fitted from the full data's fit, `start`, and from no floor)."""
    rng = SplitMix64(seed)
    rows = []
    for _ in range(resamples):
        law, size_law = _fit_laws([_resample(iso, rng) for iso in isoflops], start)
        if law is not None:
            rows.append((*law, size_law[1] if size_law else math.nan))
    return rows


def fit_frontier(dataset: str, model: str, points: dict[float, list[tuple[float, float]]],
                 resamples: int = RESAMPLES, seed: int = SEED) -> Frontier:
    """Parabolas per budget, the power law and size law over the budgets, and their bootstrap.

    Args:
        dataset, model: what the runs are.
        points: {training-FLOP budget: [(params, validation loss), ...]}.
        resamples: bootstrap resamples (runs drawn with replacement within each budget).
        seed: the bootstrap's base seed (fixed: the same runs give the same report; each fit draws its own stream).
    """
    isoflops = [fit_parabola(b, [p for p, _ in pts], [loss for _, loss in pts]) for b, pts in sorted(points.items())]
    law, size_law = _fit_laws(isoflops)
    rejected = ""
    if law is not None and law[2] >= 0.99 * ALPHA_MAX:  # the optimiser ran into the bound: the points allow any α
        rejected = f"the fitted α sits at the bound of its range ({ALPHA_MAX:g}): these budgets do not determine a law"
        law, size_law = None, None
    samples = bootstrap(isoflops, law, resamples, fit_seed(dataset, model, seed)) if law is not None else []
    return Frontier(dataset, model, isoflops, law, size_law, samples, resamples, rejected=rejected)


def compute_for_loss(frontier: Frontier, loss: float) -> tuple[float, float, float, float]:
    """(C, low, high, share) with L*(C) = loss: the fit's compute, the percentile interval over the resamples that
    reach the loss at all, and the share of resamples that do (a loss at or below the floor E is never reached)."""
    def solve(e: float, a: float, alpha: float) -> float:  # in logs: a small α puts C past the largest float
        if loss <= e:
            return math.inf
        if a <= 0:  # L*(C) = E everywhere: any loss above the floor is reached at once
            return 0.0
        log_c = math.log(a) - math.log(loss - e)
        if alpha <= 0:  # a flat law: reached at once, or never
            return math.inf if log_c > 0 else 0.0
        log_c /= alpha
        return math.exp(log_c) if log_c < LOG_FLOAT_MAX else math.inf

    central = solve(*frontier.law)  # type: ignore[misc]
    values = [solve(*row[:3]) for row in frontier.samples]
    finite = [v for v in values if math.isfinite(v)]
    share = len(finite) / len(values) if values else 0.0
    if not finite:
        return central, math.nan, math.nan, share
    lo, hi = percentile(finite, BAND[0]), percentile(finite, BAND[1])
    return central, lo, hi if share == 1.0 else math.inf, share
