"""`tinylm check-model`: the contract a model keeps to be compared fairly with the others, checked on it.

Each check runs the model's own code on a short text of the dataset and ends as one line: pass, FAIL with what to
fix, or skip where it does not apply (a model without targets, a cache, ...). Every built-in model passes them all.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tinylm.config import RunConfig
from tinylm.data.config import DataConfig
from tinylm.data.corpus import Corpus, load_corpus, sample_batch
from tinylm.files import load_tensors, save_tensors
from tinylm.generate.sampling import generate_ids
from tinylm.models.base import LanguageModel
from tinylm.models.plugins import describe_error
from tinylm.models.registry import build_model
from tinylm.paths import Paths
from tinylm.suite_file import SuiteFile, load_suite_file, resolve_run
from tinylm.training.evaluate import evaluate, protocol_window, window_plan
from tinylm.training.trainer import Trainer

FLOP_TOLERANCE = 0.05
"""Counted and analytic FLOPs may differ by this share (the counter sees matmuls and convolutions only)."""
CHECK_SETS = ["train.max_steps=3", "train.batch_size=4", "train.device=cpu", "train.precision=fp32",
              "train.compile=false", "model.head=full"]
"""What check-model sets before the user's --set: three small steps on the CPU in fp32, a full softmax head."""


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    status: str
    """pass | FAIL | skip."""
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name}: {self.detail}"


class _Failed(Exception):
    """A check's failure, with what to fix."""


def _logits(model: LanguageModel, x: torch.Tensor) -> torch.Tensor:
    return model(x).float()


def check_causality(model: LanguageModel, text: torch.Tensor) -> str:
    """Changing the tokens after position t changes no logit at positions <= t; a window model's logit at t reads
    nothing before its window."""
    C, V = model.context_length, model.config.vocab_size
    T = min(len(text) - 1, C + 8 if model.fixed_window or model.recurrent else C)
    x = torch.stack([text[:T], torch.randint(0, V, (T,), generator=torch.Generator().manual_seed(0))])
    base = _logits(model, x)
    for t in sorted({0, T // 2, T - 2}):
        changed = x.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1) % V
        diff = float((_logits(model, changed)[:, : t + 1] - base[:, : t + 1]).abs().max())
        if diff > 1e-4:
            raise _Failed(f"the logits at position {t} change by {diff:.2g} when only later tokens change: the model "
                          f"sees the future; mask (or shift) so that position t reads tokens <= t only")
    if model.fixed_window and T > C:
        changed = x.clone()
        changed[:, : T - C] = (changed[:, : T - C] + 1) % V
        diff = float((_logits(model, changed)[:, -1] - base[:, -1]).abs().max())
        if diff > 1e-4:
            raise _Failed(f"the logits at position {T - 1} change by {diff:.2g} with tokens more than context_length="
                          f"{C} back: a window model reads its last context_length tokens only")
    return f"no logit at positions <= t moved when tokens after t changed (t = 0, {T // 2}, {T - 2})"


def check_targets(model: LanguageModel, text: torch.Tensor) -> str:
    """forward(idx, targets) equals -log_softmax(forward(idx)) at the targets (all positions, and the last half)."""
    if not model.takes_targets:
        return "skip: the model does not take targets (the trainer and evaluator score its logits)"
    T = min(len(text) - 1, model.context_length)
    x, y = text[None, :T], text[None, 1 : T + 1]
    reference = -torch.log_softmax(_logits(model, x), -1).gather(-1, y[..., None])[..., 0]
    for first in (0, T // 2):
        nll = model(x, targets=y[:, first:]).float()
        if nll.shape != reference[:, first:].shape:
            raise _Failed(f"forward(idx, targets) returned shape {tuple(nll.shape)} for targets of shape "
                          f"{tuple(y[:, first:].shape)}: return -log p of each target, shape (B, T')")
        diff = float((nll - reference[:, first:]).abs().max())
        if diff > 1e-4:
            raise _Failed(f"forward(idx, targets) differs from -log_softmax(forward(idx)) by {diff:.2g} nats "
                          f"(targets from position {first}): score the last T' positions of idx")
    return f"-log p of the targets equals -log_softmax of the logits within 1e-4 (all {T} positions, and the last half)"


def _rnn_flops(passes: int) -> Callable[..., int]:
    """The FLOPs of one layer of torch's CPU LSTM kernel (which the counter does not know): 2 x tokens x the input
    and recurrent weight matrices' sizes, for the forward pass (passes=1) or the backward (2)."""
    def count(*shapes: object, out_shape: object = None, **kwargs: object) -> int:
        tokens = math.prod(shapes[0][:-1])  # type: ignore[index]
        mats = [s for s in shapes[1:5] if isinstance(s, (tuple, list, torch.Size)) and len(s) == 2][:2]
        return passes * 2 * tokens * sum(a * b for a, b in mats)
    return count


RNN_FLOPS = {torch.ops.aten.mkldnn_rnn_layer: _rnn_flops(1), torch.ops.aten.mkldnn_rnn_layer_backward: _rnn_flops(2)}


def _counted(run: Callable[[], object]) -> float:
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False, custom_mapping=RNN_FLOPS) as counter:
        run()
    return float(counter.get_total_flops())


def _compare(what: str, counted: float, analytic: float, tokens: int, other: float) -> str:
    if counted == analytic == 0:
        return f"{what}: no matmuls (its {other:,.0f} FLOPs/token are other arithmetic, which the counter does not see)"
    if counted == 0:
        return f"{what}: the counter sees none of the work (fused kernels), analytic {analytic / tokens:,.0f}/token"
    ratio = analytic / counted
    if abs(ratio - 1) > FLOP_TOLERANCE:
        raise _Failed(f"{what}: analytic {analytic / tokens:,.0f} FLOPs/token, counted {counted / tokens:,.0f} "
                      f"({ratio:.2f}x): fix matmul_flops_per_token (2*m*n*k per matmul, at the sequence length given)")
    return f"{what} {analytic / tokens:,.0f}/token ({ratio:.3f}x counted)"


def check_flops(trainer: Trainer) -> str:
    """The analytic matmul FLOPs per token within FLOP_TOLERANCE of torch.utils.flop_counter's count, forward
    alone and a training step (forward and backward)."""
    model, plan, t = trainer.model, trainer.plan, trainer.cfg.train
    if not model.flops_known:
        return ("skip: the model does not count its FLOPs (no matmul_flops_per_token): it trains on budgets of "
                "tokens, steps or time, and the report leaves it off its FLOP axes")
    tokens = plan.tokens_per_step
    per_token = model.matmul_flops_per_token(plan.fed_len)
    x, y = sample_batch(trainer.train_tokens, t.batch_size, plan.fed_len, torch.Generator().manual_seed(0))

    def forward() -> None:
        with torch.no_grad():
            if model.takes_targets:
                model(x, targets=y[:, model.train_skip:])
            else:
                model(x)

    other = model.other_flops_per_token()
    lines = [_compare("forward", _counted(forward), tokens * per_token, tokens, other),
             _compare("training step", _counted(lambda: trainer.train_step(1e-3)), 3 * tokens * per_token, tokens,
                      3 * other)]
    return "; ".join(lines)


def check_safetensors(model: LanguageModel, config: object) -> str:
    """The weights round-trip through a safetensors file bit for bit, the tied tensors staying tied."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        try:
            save_tensors(path, model.weights())
        except RuntimeError as e:
            raise _Failed(f"the weights cannot be written as safetensors ({str(e).splitlines()[0]}): tensors that "
                          "share memory must be parameters of the model tied as one nn.Parameter") from None
        tensors, _ = load_tensors(path)
    torch.manual_seed(12345)
    again = type(model)(config)
    again.load_weights(tensors)
    mine, theirs = model.state_dict(), again.state_dict()
    for name, value in mine.items():
        if not torch.equal(value, theirs[name]):
            raise _Failed(f"{name} differs after a round trip through safetensors: keep every tensor the model needs "
                          "in its state_dict")
    if again.tied_aliases() != model.tied_aliases():
        raise _Failed(f"tied tensors {sorted(model.tied_aliases())} are not tied again after loading: tie them in "
                      "__init__ (one nn.Parameter held twice)")
    tied = f", {len(model.tied_aliases())} tied" if model.tied_aliases() else ""
    return f"{len(tensors)} tensors written and read back bit for bit{tied}"


def check_cache(model: LanguageModel, text: torch.Tensor) -> str:
    """Generation with the model's cache gives the tokens generation without it gives, under one seed."""
    if not getattr(model, "supports_kv_cache", False):
        return "skip: the model has no cache (generation runs the window again at every step)"
    prompt = text[:8].tolist()
    # past one slide of the window; a recurrent model without its cache reads the whole prefix at every step
    length = 40 if model.recurrent else min(300, model.context_length + model.context_length // 2 + 2)
    with_cache = list(generate_ids(model, prompt, length, temperature=1.0, seed=7, use_cache=True))
    without = list(generate_ids(model, prompt, length, temperature=1.0, seed=7, use_cache=False))
    if with_cache != without:
        first = next(i for i, (a, b) in enumerate(zip(with_cache, without, strict=True)) if a != b)
        raise _Failed(f"with its cache the model samples differently from without it (token {first} of {length}): "
                      "the cache must give the logits a full forward pass gives")
    return f"{length} tokens sampled with and without the cache are identical"


def check_protocol(model: LanguageModel, text: torch.Tensor) -> str:
    """The protocol's score of a short text equals a naive loop that scores each token from its own forward pass."""
    C = model.context_length
    stride = 64 if model.recurrent else 8 if model.fixed_window else max(1, C // 2)
    n = min(len(text), 200 if model.recurrent else 2 * C + 1 if not model.fixed_window else 3 * stride + C)
    tokens = text[:n]
    result = evaluate(model, tokens, batch_size=4, stride=stride)
    naive, count = 0.0, 0
    with torch.no_grad():
        if model.recurrent:  # one token at a time, the state carried
            state = model.new_cache()
            for j in range(1, n):
                logits = model(tokens[None, j - 1 : j], state).float()[0, -1]
                naive += float(torch.log_softmax(logits, -1)[tokens[j]])
                count += 1
        else:
            window, stride = protocol_window(model, stride)
            for a, length, first in window_plan(n, window, stride):
                for pos in range(first, length):
                    logits = _logits(model, tokens[None, a : a + pos + 1])[0, -1]
                    naive += float(torch.log_softmax(logits, -1)[tokens[a + pos + 1]])
                    count += 1
    if count != result.tokens:
        raise _Failed(f"the protocol scored {result.tokens} tokens of {n - 1}, the naive loop {count}")
    diff = abs(naive - result.total_logprob) / count
    if diff > 1e-5:
        raise _Failed(f"the protocol scores {result.loglik:.6f} nats/token, a naive token-by-token loop "
                      f"{naive / count:.6f} over the same {count} tokens: a forward pass over a batch of windows must "
                      "give each position the logits it gets alone")
    return f"{count} tokens: protocol {result.loglik:.6f}, naive loop {naive / count:.6f} nats/token"


def check_determinism(make: Callable[[], Trainer]) -> str:
    """Two trainings with one seed, one after the other, end with the same weights, bit for bit."""
    ends = []
    for _ in range(2):
        trainer = make()
        for _ in range(3):
            trainer.train_step(1e-3)
        ends.append(trainer.model.state_dict())
    (a, b), first = ends, trainer
    for name, value in a.items():
        if not torch.equal(value, b[name]):
            raise _Failed(f"two trainings with seed {first.cfg.train.seed} differ in {name}: draw randomness only from "
                          "torch's generators (torch.rand*, tinylm's Dropout, nn.Dropout), which the trainer seeds")
    return f"{len(a)} tensors identical after 3 steps of two trainings with seed {first.cfg.train.seed}"


def _run(name: str, body: Callable[[], str]) -> Check:
    try:
        detail = body()
    except _Failed as e:
        return Check(name, "FAIL", str(e))
    except Exception as e:  # the model's own code raised: told in one line, with where
        return Check(name, "FAIL", f"raised {describe_error(e)}")
    if detail.startswith("skip: "):
        return Check(name, "skip", detail[len("skip: "):])
    return Check(name, "pass", detail)


def check_model(model: str, dataset: str = "tinyshakespeare", *, data: DataConfig | None = None,
                sets: list[str] | None = None, suite: SuiteFile | None = None, paths: Paths | None = None,
                on_check: Callable[[Check], None] | None = None) -> list[Check]:
    """Run every check on `model` (a registered name, an entry point or `file.py:Class`) as configured for
    `dataset` (or the text of `data`) with `sets` laid on, calling `on_check` as each one ends."""
    suite = suite if suite is not None else load_suite_file()
    paths = paths or Paths.of()
    cfg = resolve_run(model, dataset, suite=suite, data=data, sets=[*CHECK_SETS, *(sets or [])])
    corpus = load_corpus(cfg.data, paths.data, paths.mirror, quiet=True)
    text = torch.as_tensor(corpus.splits["valid"][: 4 * cfg.model.context_length + 1024].astype("int64"))
    built = _fresh(cfg, corpus)
    checks: list[Check] = []

    def done(check: Check) -> None:
        checks.append(check)
        if on_check is not None:
            on_check(check)

    with torch.no_grad():
        done(_run("causality", lambda: check_causality(built, text)))
        done(_run("targets", lambda: check_targets(built, text)))
    done(_run("flops", lambda: check_flops(Trainer(cfg, corpus))))
    done(_run("safetensors", lambda: check_safetensors(built, built.config)))
    with torch.no_grad():
        done(_run("cache", lambda: check_cache(built, text)))
        done(_run("protocol", lambda: check_protocol(built, text)))
    done(_run("determinism", lambda: check_determinism(lambda: Trainer(cfg, corpus))))
    return checks


def _fresh(cfg: RunConfig, corpus: Corpus) -> LanguageModel:
    """The model at its initial weights (seed 0), in eval mode."""
    torch.manual_seed(0)
    model = build_model(cfg.model_name, cfg.model_config(corpus.tokenizer.vocab_size))
    return model.eval()

