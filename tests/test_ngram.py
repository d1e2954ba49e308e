"""The Kneser-Ney baseline: a normalised distribution, equal to a plain reference implementation, and the published
numbers on the real splits."""

from __future__ import annotations

import json
import math
from collections import defaultdict

import numpy as np
import pytest

from tinylm.config import DataConfig
from tinylm.ngram import KneserNey, _discounts, read_baselines, run_baseline
from tinylm.paths import Paths


def reference_kn(train: list[int], V: int, n: int):
    """Interpolated modified Kneser-Ney written the slow, obvious way (dicts of counts), for comparison."""
    counts = [defaultdict(int) for _ in range(n + 1)]  # counts[k][gram]: raw (k = n) or continuation (k < n)
    for i in range(n - 1, len(train)):
        counts[n][tuple(train[i - n + 1:i + 1])] += 1
    for k in range(n - 1, 0, -1):
        higher = {tuple(train[i - k:i + 1]) for i in range(k, len(train))}
        for g in higher:
            counts[k][g[1:]] += 1
    discounts = {k: _discounts(np.array(list(counts[k].values()))) for k in range(1, n + 1)}

    def d(k, c):
        return 0.0 if c == 0 else discounts[k][min(c, 3) - 1]

    def p(k, ctx, w):
        if k == 0:
            return 1.0 / V
        lower = p(k - 1, ctx[1:], w)
        children = {g: c for g, c in counts[k].items() if g[:-1] == ctx}
        total = sum(children.values())
        if total == 0:
            return lower
        gamma = sum(d(k, c) for c in children.values())
        c = counts[k].get(ctx + (w,), 0)
        return (max(c - d(k, c), 0) + gamma * lower) / total

    def logprobs(seq):
        return [math.log(p(min(j, n - 1) + 1, tuple(seq[max(0, j - n + 1):j]), seq[j])) for j in range(1, len(seq))]

    return logprobs


def test_matches_a_plain_reference_implementation():
    rng = np.random.default_rng(0)
    V = 5
    train = list(rng.integers(0, V, 400) * (rng.random(400) < 0.7))  # skewed: plenty of repeats and rare grams
    test = list(rng.integers(0, V, 60))
    for n in (2, 3, 4):
        ours = KneserNey(np.array(train), V, n).logprobs(np.array(test))
        theirs = reference_kn(train, V, n)(test)
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_probabilities_sum_to_one_over_the_vocabulary(n):
    rng = np.random.default_rng(1)
    V = 7
    model = KneserNey(rng.integers(0, V, 3000), V, n)
    for context in ([], [3], [1, 2, 3, 4], [6, 6, 6, 6, 6, 6]):  # seen, unseen and short contexts
        ctx = context[-(n - 1):] if context else []
        total = sum(math.exp(model.logprobs(np.array([0, *ctx, w]))[-1]) for w in range(V))
        assert total == pytest.approx(1.0, abs=1e-9)


@pytest.mark.slow
def test_the_published_kneser_ney_numbers(tmp_path, mirror, data_dir):
    """7-gram on Tiny Shakespeare test: -1.687 nats/char; 5-gram on PTB test: perplexity 141.2."""
    paths = Paths.of(tmp_path, data_dir, mirror)
    shakespeare = run_baseline(DataConfig(name="tinyshakespeare"), paths)
    assert shakespeare["order"] == 7 and shakespeare["test_loglik"] == pytest.approx(-1.687, abs=0.001)
    assert shakespeare["test_tokens_scored"] == 111_539
    ptb = run_baseline(DataConfig(name="ptb"), paths)
    assert ptb["order"] == 5 and ptb["test_perplexity"] == pytest.approx(141.2, abs=0.5)
    found = read_baselines(tmp_path)
    assert found["tinyshakespeare"]["test_loglik"] == shakespeare["test_loglik"]
    (tmp_path / "baselines" / "ptb-kneser-ney-5.json").write_text("{not json")
    assert "ptb" not in read_baselines(tmp_path)  # a damaged file is skipped, not fatal
    assert json.loads((tmp_path / "baselines" / "tinyshakespeare-kneser-ney-7.json").read_text())["order"] == 7
