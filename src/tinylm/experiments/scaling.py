"""Iso-FLOP scaling fits: per training-FLOP budget a parabola of validation loss in log N gives the best size N*(C)
and its loss L*(C) (Hoffmann et al. 2022, approach 2); per architecture L*(C) = E + A·C^(−α) (Kaplan et al. 2020)
and N*(C) ∝ C^a, with percentile bands from a bootstrap that resamples the runs within each budget."""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit, logit

RESAMPLES = 200
SEED = 16
BAND = (2.5, 97.5)
"""Percentiles of the bootstrap bands and intervals (95%)."""
MIN_BUDGETS = 3
"""A power law E + A·C^(−α) has three parameters: it needs three budgets whose minimum was sampled."""
ALPHA_MAX = 3.0
LOG_FLOAT_MAX = math.log(sys.float_info.max)
"""Past this, e^x is no float: a compute that large is never reached."""


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
    x, y = np.log10(np.asarray(params, dtype=float)), np.asarray(losses, dtype=float)
    if len(set(x.tolist())) < 3:
        return IsoFlop(budget, list(params), list(losses), None, None, None, True)
    c2, c1, c0 = (float(c) for c in np.polyfit(x, y, 2))
    vertex = -c1 / (2 * c2) if c2 > 0 else math.nan
    inside = c2 > 0 and x.min() < vertex < x.max()
    if not inside:
        return IsoFlop(budget, list(params), list(losses), (c2, c1, c0), None, None, True)
    return IsoFlop(budget, list(params), list(losses), (c2, c1, c0), 10 ** vertex,
                   c0 - c1 * c1 / (4 * c2), False)


def _logit(value: float) -> float:
    return float(logit(min(max(value, 1e-6), 1 - 1e-6)))


def fit_power_law(budgets: list[float], losses: list[float],
                  start: tuple[float, float, float] | None = None) -> tuple[float, float, float] | None:
    """(E, A, α) of L = E + A·C^(−α) by least squares (Levenberg–Marquardt), with E = min L·σ(u) and α = 3·σ(v)
    so that 0 < E < min L and 0 < α < 3; from a few starting floors, or from `start` (a nearby fit) and no floor.
    None with fewer than three points."""
    c, y = np.asarray(budgets, dtype=float), np.asarray(losses, dtype=float)
    if len(c) < MIN_BUDGETS:
        return None
    scale = float(np.exp(np.log(c).mean()))
    x, floor = np.log(c / scale), float(y.min())

    def unpack(p: np.ndarray) -> tuple[float, float, float]:
        return floor * float(expit(p[0])), float(p[1]), ALPHA_MAX * float(expit(p[2]))

    def residuals(p: np.ndarray) -> np.ndarray:
        e, log_a, alpha = unpack(p)
        return e + np.exp(log_a - alpha * x) - y

    starts = []
    for e0 in ((0.0,) if start else (0.0, 0.5, 0.9)):
        gap = np.maximum(y - e0 * floor, 1e-6)
        slope = -np.polyfit(x, np.log(gap), 1)[0] if np.ptp(x) > 0 else 0.5
        starts.append([_logit(e0), float(np.log(gap.mean())), _logit(slope / ALPHA_MAX)])
    if start:
        e, a, alpha = start
        starts.append([_logit(e / floor), math.log(a) - alpha * math.log(scale), _logit(alpha / ALPHA_MAX)])
    fits = [least_squares(residuals, p0, method="lm") for p0 in starts]
    e, log_a, alpha = unpack(min(fits, key=lambda f: f.cost).x)
    return e, float(np.exp(log_a + alpha * math.log(scale))), alpha


def fit_size_law(budgets: list[float], n_stars: list[float]) -> tuple[float, float] | None:
    """(k, a) of N*(C) = k·C^a, a line in log-log; None with fewer than two points."""
    if len(budgets) < 2:
        return None
    a, log_k = np.polyfit(np.log10(budgets), np.log10(n_stars), 1)
    return float(10 ** log_k), float(a)


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
    samples: np.ndarray = field(default_factory=lambda: np.empty((0, 4)))
    """One row per successful resample: E, A, α, a."""
    resamples: int = 0
    rejected: str = ""
    """Why a law fitted to the budgets was not kept (e.g. α at the bound of its range)."""

    @property
    def budgets(self) -> list[float]:
        return [iso.budget for iso in self.isoflops]

    def loss(self, compute: np.ndarray | float) -> np.ndarray:
        """The fitted L*(C)."""
        e, a, alpha = self.law  # type: ignore[misc]
        return e + a * np.asarray(compute, dtype=float) ** -alpha

    def sample_losses(self, compute: np.ndarray) -> np.ndarray:
        """L*(C) of every resample: (resamples, len(compute))."""
        c = np.asarray(compute, dtype=float)[None, :]
        e, a, alpha = (self.samples[:, i:i + 1] for i in range(3))
        return e + a * c ** -alpha

    def band(self, compute: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The percentile band of L*(C) over the resamples."""
        lo, hi = np.percentile(self.sample_losses(compute), BAND, axis=0)
        return lo, hi

    def interval(self, column: int) -> tuple[float, float]:
        """The percentile interval of E (0), A (1), α (2) or the N* exponent a (3)."""
        values = self.samples[:, column]
        values = values[np.isfinite(values)]
        if not len(values):
            return math.nan, math.nan
        lo, hi = np.percentile(values, BAND)
        return float(lo), float(hi)


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


def _resample(iso: IsoFlop, rng: np.random.Generator) -> IsoFlop:
    """One bootstrap draw of a budget's runs (with replacement), redrawn while it holds fewer than three distinct
    sizes (a parabola needs three); repeated runs weigh as often as they are drawn."""
    n = len(iso.params)
    for _ in range(100):
        pick = rng.integers(0, n, n)
        if len({iso.params[i] for i in pick}) >= 3:
            break
    return fit_parabola(iso.budget, [iso.params[i] for i in pick], [iso.losses[i] for i in pick])


def bootstrap(isoflops: list[IsoFlop], start: tuple[float, float, float], resamples: int = RESAMPLES,
              seed: int = SEED) -> np.ndarray:
    """(E, A, α, a) of every resample whose refitted parabolas leave three budgets with a sampled minimum (each
    power law fitted from the full data's fit, `start`, and from no floor)."""
    rng = np.random.default_rng(seed)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a resample's parabola through repeated points may be ill-conditioned
        for _ in range(resamples):
            law, size_law = _fit_laws([_resample(iso, rng) for iso in isoflops], start)
            if law is not None:
                rows.append([*law, size_law[1] if size_law else math.nan])
    return np.asarray(rows, dtype=float).reshape(-1, 4)


def fit_frontier(dataset: str, model: str, points: dict[float, list[tuple[float, float]]],
                 resamples: int = RESAMPLES, seed: int = SEED) -> Frontier:
    """Parabolas per budget, the power law and size law over the budgets, and their bootstrap.

    Args:
        dataset, model: what the runs are.
        points: {training-FLOP budget: [(params, validation loss), ...]}.
        resamples: bootstrap resamples (runs drawn with replacement within each budget).
        seed: the bootstrap's seed (fixed: the same runs give the same report).
    """
    isoflops = [fit_parabola(b, [p for p, _ in pts], [loss for _, loss in pts]) for b, pts in sorted(points.items())]
    law, size_law = _fit_laws(isoflops)
    rejected = ""
    if law is not None and law[2] >= 0.99 * ALPHA_MAX:  # the optimiser ran into the bound: the points allow any α
        rejected = f"the fitted α sits at the bound of its range ({ALPHA_MAX:g}): these budgets do not determine a law"
        law, size_law = None, None
    samples = bootstrap(isoflops, law, resamples, seed) if law is not None else np.empty((0, 4))
    return Frontier(dataset, model, isoflops, law, size_law, samples, resamples, rejected=rejected)


def compute_for_loss(frontier: Frontier, loss: float) -> tuple[float, float, float, float]:
    """(C, low, high, share) with L*(C) = loss: the fit's compute, the percentile interval over the resamples that
    reach the loss at all, and the share of resamples that do (a loss at or below the floor E is never reached)."""
    def solve(e: float, a: float, alpha: float) -> float:  # in logs: a small α puts C past the largest float
        if loss <= e:
            return math.inf
        log_c = (math.log(a) - math.log(loss - e)) / alpha
        return math.exp(log_c) if log_c < LOG_FLOAT_MAX else math.inf

    central = solve(*frontier.law)  # type: ignore[misc]
    values = np.array([solve(*row[:3]) for row in frontier.samples])
    finite = values[np.isfinite(values)]
    share = len(finite) / len(values) if len(values) else 0.0
    if not len(finite):
        return central, math.nan, math.nan, share
    lo, hi = np.percentile(finite, BAND)
    return central, float(lo), float(hi) if share == 1.0 else math.inf, share
