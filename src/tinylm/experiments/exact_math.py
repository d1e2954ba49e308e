"""The numerics of the scaling fits in Python floats: least squares, Levenberg–Marquardt, percentiles and a seeded
generator that give the same bits on every machine.

numpy's vectorised maths and BLAS/LAPACK pick their kernels by CPU (AVX-512 or not, the BLAS core type) and thread
count, and the last bits of their results differ between kernels; a bootstrap of ill-conditioned fits amplifies
those bits into printed digits and figure pixels. Python's float operations are IEEE-754 doubles, each correctly
rounded, sums here are exact (`math.fsum`), and the generator is SplitMix64 over Python ints: the shipped report
regenerates byte for byte on any machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

EXP_MAX = 709.0
"""Past this, e^x is no float."""


def exp(x: float) -> float:
    """e^x, inf where it overflows (math.exp raises instead)."""
    return math.exp(x) if x < EXP_MAX else math.inf


def sigmoid(x: float) -> float:
    """1 / (1 + e^−x) without overflow on either side."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def logit(p: float, eps: float = 1e-6) -> float:
    """log(p / (1 − p)), p clipped into [eps, 1 − eps]."""
    p = min(max(p, eps), 1 - eps)
    return math.log(p / (1 - p))


def solve(a: list[list[float]], b: list[float]) -> list[float] | None:
    """x with a·x = b by Gaussian elimination with partial pivoting; None where a is singular."""
    n = len(b)
    m = [list(row) + [rhs] for row, rhs in zip(a, b)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if m[pivot][col] == 0.0 or not math.isfinite(m[pivot][col]):
            return None
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, n):
            f = m[r][col] / m[col][col]
            m[r] = [vr - f * vc for vr, vc in zip(m[r], m[col])]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - math.fsum(m[r][c] * x[c] for c in range(r + 1, n))) / m[r][r]
    return x


def polyfit(x: Sequence[float], y: Sequence[float], deg: int) -> list[float] | None:
    """Least-squares polynomial coefficients, highest power first (as numpy.polyfit); None without deg + 1 distinct
    x. Solved in x centred and scaled to [−1, 1], where the normal equations are well conditioned."""
    if len(set(x)) <= deg:
        return None
    mid, half = (max(x) + min(x)) / 2, (max(x) - min(x)) / 2
    t = [(v - mid) / half for v in x]
    powers = [[ti ** k for k in range(deg + 1)] for ti in t]
    gram = [[math.fsum(p[i] * p[j] for p in powers) for j in range(deg + 1)] for i in range(deg + 1)]
    moment = [math.fsum(p[i] * yi for p, yi in zip(powers, y)) for i in range(deg + 1)]
    b = solve(gram, moment)
    if b is None:
        return None
    # p(x) = Σ b_k ((x − mid) / half)^k, expanded in powers of x
    coeffs = [0.0] * (deg + 1)
    for k, bk in enumerate(b):
        for j in range(k + 1):
            coeffs[j] += bk * math.comb(k, j) * (-mid) ** (k - j) / half ** k
    return coeffs[::-1]


def polyval(coeffs: Sequence[float], x: float) -> float:
    """The polynomial (highest power first) at x, by Horner's rule."""
    value = 0.0
    for c in coeffs:
        value = value * x + c
    return value


Residuals = Callable[[list[float]], tuple[list[float], list[list[float]]]]
"""Parameters -> (residuals r_k, Jacobian rows ∂r_k/∂p_i)."""


def _normal_equations(r: list[float], jac: list[list[float]]) -> tuple[list[list[float]], list[float]]:
    n = len(jac[0])
    jtj = [[math.fsum(row[i] * row[j] for row in jac) for j in range(n)] for i in range(n)]
    jtr = [math.fsum(row[i] * rk for row, rk in zip(jac, r)) for i in range(n)]
    return jtj, jtr


def levenberg_marquardt(fun: Residuals, p0: Sequence[float], max_iter: int = 500) -> tuple[list[float], float]:
    """(parameters, cost = ½Σr²) minimising the residuals from p0, run to machine precision: it stops where no step
    lowers the cost any more (or after max_iter steps), so the answer depends on the problem, not on a tolerance
    that another machine's rounding would cross at another step."""
    p = list(p0)
    r, jac = fun(p)
    cost = 0.5 * math.fsum(v * v for v in r)
    damping = 1e-3
    for _ in range(max_iter):
        if not math.isfinite(cost):
            break
        jtj, jtr = _normal_equations(r, jac)
        scaled = [[jtj[i][j] + (damping * max(jtj[i][i], 1e-300) if i == j else 0.0) for j in range(len(p))]
                  for i in range(len(p))]
        step = solve(scaled, [-g for g in jtr])
        trial = [pi + si for pi, si in zip(p, step)] if step is not None else p
        r_new, jac_new = fun(trial) if step is not None else (r, jac)
        cost_new = 0.5 * math.fsum(v * v for v in r_new)
        if step is not None and cost_new < cost:
            p, r, jac, cost = trial, r_new, jac_new, cost_new
            damping = max(damping / 3, 1e-12)
        else:
            damping *= 4
            if damping > 1e16:  # no step of any length lowers the cost: a minimum, to the last bit
                break
    return p, cost


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile by linear interpolation between the order statistics (numpy's default method); nan of
    no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = q / 100 * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def logspace(start: float, stop: float, num: int) -> list[float]:
    """num points from 10^start to 10^stop, evenly spaced in log10."""
    return [10 ** (start + (stop - start) * i / (num - 1)) for i in range(num)]


class SplitMix64:
    """A small seeded generator (Steele, Lea and Flood 2014) in Python ints: the same draws on every machine and
    every Python and numpy version."""

    MASK = (1 << 64) - 1

    def __init__(self, seed: int) -> None:
        self.state = seed & self.MASK

    def next(self) -> int:
        """The next 64-bit word."""
        self.state = (self.state + 0x9E3779B97F4A7C15) & self.MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.MASK
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """A uniform integer in [0, n), without the modulo's bias (rejection of the incomplete last block)."""
        limit = (1 << 64) - (1 << 64) % n
        while True:
            word = self.next()
            if word < limit:
                return word % n
