"""Interpolated modified Kneser-Ney n-gram baseline (Chen & Goodman, 1998), counted with numpy in seconds.

The yardstick for the neural models: a network that does not clearly beat it has learned little beyond local
counts. It is scored by the same rule as every model: every token of the split but the first, exactly once, with
no context from outside the split.

n-grams are numbered order by order: the id of the k-gram ending at position i is the rank of the key
(id of the (k-1)-gram ending at i-1) * V + token i among the distinct keys of order k, so keys fit in int64 for any
vocabulary and every lookup is a `searchsorted`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinylm.data.config import DataConfig
from tinylm.data.corpus import load_corpus
from tinylm.files import atomic_write_json
from tinylm.paths import Paths


@dataclass
class _Order:
    keys: np.ndarray  # sorted distinct keys of this order: context id * V + token
    counts: np.ndarray  # raw counts (highest order) or continuation counts (lower orders), per key
    context_total: np.ndarray  # per context id of order k-1: sum of counts of its children
    context_gamma: np.ndarray  # per context id: D1*N1 + D2*N2 + D3*N3+ (the mass given to the lower order)
    discounts: tuple[float, float, float]


def _discounts(counts: np.ndarray) -> tuple[float, float, float]:
    """D1, D2, D3+ from the counts of counts (Chen & Goodman), kept within [0, k] for a count of k."""
    n = [int((counts == k).sum()) for k in (1, 2, 3, 4)]
    if min(n) == 0:
        return 0.5, 1.0, 1.5  # too little data to estimate: a conventional choice
    y = n[0] / (n[0] + 2 * n[1])
    d = (1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2])
    return tuple(float(min(max(v, 0.0), k)) for k, v in zip((1, 2, 3), d))  # type: ignore[return-value]


def _discount_of(counts: np.ndarray, d: tuple[float, float, float]) -> np.ndarray:
    return np.select([counts == 0, counts == 1, counts == 2], [0.0, d[0], d[1]], d[2])


class KneserNey:
    """An order-n interpolated modified Kneser-Ney model of a token sequence with vocabulary size V."""

    def __init__(self, train: np.ndarray, vocab_size: int, order: int):
        if order < 2:
            raise ValueError(f"order must be at least 2 (got {order})")
        self.V, self.n = int(vocab_size), int(order)
        tokens = np.asarray(train, dtype=np.int64)
        ids = [tokens]  # ids[k-1][i]: id of the k-gram ending at i (-1 where the text is too short)
        keys_by_order = [np.arange(self.V, dtype=np.int64)]
        for k in range(2, self.n + 1):
            prev = ids[-1]
            shifted = np.full(len(tokens), -1, dtype=np.int64)
            shifted[1:] = prev[:-1]
            ok = shifted >= 0
            key = shifted * self.V + tokens
            uniq, inverse = np.unique(key[ok], return_inverse=True)
            cur = np.full(len(tokens), -1, dtype=np.int64)
            cur[ok] = inverse
            ids.append(cur)
            keys_by_order.append(uniq)
        self.orders: list[_Order] = []
        for k in range(1, self.n + 1):
            n_grams = len(keys_by_order[k - 1])
            if k == self.n:
                counts = np.bincount(ids[k - 1][ids[k - 1] >= 0], minlength=n_grams)
            else:  # continuation count: distinct one-token-left extensions of each k-gram
                higher, first = np.unique(ids[k], return_index=True)
                suffix = ids[k - 1][first[higher >= 0]]
                counts = np.bincount(suffix[suffix >= 0], minlength=n_grams)
            d = _discounts(counts[counts > 0])
            n_contexts = 1 if k == 1 else len(keys_by_order[k - 2])
            ctx = np.zeros(n_grams, dtype=np.int64) if k == 1 else keys_by_order[k - 1] // self.V
            total = np.bincount(ctx, weights=counts, minlength=n_contexts)
            gamma = np.bincount(ctx, weights=_discount_of(counts, d) * (counts > 0), minlength=n_contexts)
            self.orders.append(_Order(keys_by_order[k - 1], counts, total, gamma, d))

    def logprobs(self, tokens: np.ndarray) -> np.ndarray:
        """log p(token_j | the up to n-1 tokens before it within `tokens`), for j = 1 .. len-1."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.min(initial=0) < 0 or tokens.max(initial=0) >= self.V:
            raise ValueError("token ids outside the vocabulary")
        first = self.orders[0]
        c1 = first.counts[tokens]
        p = (np.maximum(c1 - _discount_of(c1, first.discounts), 0) + first.context_gamma[0] / self.V)
        p = p / first.context_total[0]
        ids = tokens.copy()  # id of the k-gram ending at j in the training tables (-1: never seen)
        for k in range(2, self.n + 1):
            o = self.orders[k - 1]
            ctx = np.full(len(tokens), -1, dtype=np.int64)
            ctx[1:] = ids[:-1]
            known = ctx >= 0
            key = np.where(known, ctx * self.V + tokens, -1)
            pos = np.searchsorted(o.keys, key)
            pos_c = np.minimum(pos, len(o.keys) - 1)
            found = known & (len(o.keys) > 0) & (o.keys[pos_c] == key)
            ids = np.where(found, pos_c, -1)
            c = np.where(found, o.counts[pos_c], 0)
            safe_ctx = np.where(known, ctx, 0)
            total = np.where(known, o.context_total[safe_ctx], 0.0)
            mixed = (np.maximum(c - _discount_of(c, o.discounts), 0) + o.context_gamma[safe_ctx] * p)
            p = np.where(total > 0, mixed / np.maximum(total, 1e-300), p)
        return np.log(p[1:])


def default_order(level: str) -> int:
    """7 for characters, 5 for words: the orders of the published Kneser-Ney references."""
    return 7 if level == "char" else 5


def run_baseline(data: DataConfig, paths: Paths, order: int | None = None) -> dict[str, Any]:
    """Count the Kneser-Ney model on the train split, score valid and test; write results/baselines/<name>.json."""
    corpus = load_corpus(data, paths.data, paths.mirror, quiet=True)
    order = order or default_order(corpus.tokenizer.level)
    start = time.perf_counter()
    model = KneserNey(corpus.splits["train"], corpus.tokenizer.vocab_size, order)
    scores = {s: float(model.logprobs(corpus.splits[s]).mean()) for s in ("valid", "test")}
    out = {
        "dataset": data.label, "model": f"kneser-ney-{order}", "order": order,
        "vocab_size": corpus.tokenizer.vocab_size, "train_tokens": len(corpus.splits["train"]),
        "test_tokens_scored": len(corpus.splits["test"]) - 1, "discounts": list(model.orders[-1].discounts),
        "valid_loglik": scores["valid"], "test_loglik": scores["test"], "test_perplexity": math.exp(-scores["test"]),
        "seconds": time.perf_counter() - start,
        "note": "interpolated modified Kneser-Ney; every test token but the first scored once, as for the models",
    }
    atomic_write_json(baseline_path(paths.results, data.label, order), out)
    return out


def baseline_path(results: Path, label: str, order: int) -> Path:
    return Path(results) / "baselines" / f"{label}-kneser-ney-{order}.json"


def read_baselines(results: Path) -> dict[str, dict[str, Any]]:
    """{dataset label: the highest-order baseline result} from results/baselines."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((Path(results) / "baselines").glob("*.json")):
        try:
            b = json.loads(path.read_text(encoding="utf-8"))
            label, order = str(b["dataset"]), int(b["order"])
            float(b["test_loglik"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged baseline file is ignored: `tinylm baseline` writes it again
        if label not in out or order > out[label]["order"]:
            out[label] = b
    return out
