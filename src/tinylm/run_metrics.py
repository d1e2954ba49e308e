"""The schema of metrics.json: one run's final numbers, the machine it ran on and its status (`RunMetrics`).

The trainer's recorder writes it, every reader (the report, `tinylm runs`, `generate --model`, the API) reads it
through `RunMetrics.from_json`, which refuses a file of another shape with a message naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tinylm.errors import TinyLMError

Status = Literal["running", "interrupted", "complete", "stopped_early", "diverged"]
"""Where a run stands: training (or killed without a chance to say so), stopped by a signal with its resume state
saved, at the end of its budget, ended by its stop rule, or stopped because its loss was not finite."""
STATUSES: tuple[Status, ...] = typing.get_args(Status)
FINISHED: tuple[Status, ...] = ("complete", "stopped_early")
"""Statuses of a run that ended as planned and was scored on the full valid and test splits."""
RESUMABLE: tuple[Status, ...] = ("running", "interrupted")
"""Statuses of a run that the same command resumes from its saved state."""

FIX = "delete the run folder or train the run again"
"""What to do about a damaged metrics.json."""


@dataclass(frozen=True, kw_only=True)
class RunMetrics:
    """metrics.json: what a run trained, how far, on what, and how it scored (fields in the order written).

    Only `model`, `dataset` and `status` are always there: a running, interrupted or diverged run has no final
    scores yet, and files written by older versions lack some fields. A missing value is null in the file, None here.
    """

    run_id: str | None = None
    """The run folder's name (`<dataset>-<model>-<digest>` unless `--run-name` chose it)."""
    model: str
    """The architecture, by its registered name (`linear`, `mlp`, `attention`, `transformer`, `lstm`, ...)."""
    dataset: str
    """The dataset's label: a registered name, or the stem of the text file a run trained on."""
    level: str | None = None
    """The tokenization: `char` or `word`."""
    vocab_size: int | None = None
    """Tokens in the vocabulary."""
    params: int | None = None
    """Parameters of the model (as its `num_params()` counts them)."""
    context_length: int | None = None
    """The longest context the model sees, in tokens."""
    flops_per_token: float | None = None
    """Analytic forward FLOPs per token at the run's training sequence length (training costs 3 times as much)."""
    steps: int | None = None
    """Optimizer steps taken."""
    tokens_trained: int | None = None
    """Training positions scored: `batch_size x seq_len` per step."""
    train_flops: float | None = None
    """Analytic training FLOPs: `tokens_trained x 3 x flops_per_token`."""
    train_seconds: float | None = None
    """Seconds spent in training steps (evaluation excluded)."""
    tokens_per_second: float | None = None
    """`tokens_trained / train_seconds` (null before the first step)."""
    best_valid_loss: float | None = None
    """The lowest loss (nats/token) on the valid subset scored while training; its weights are model.safetensors."""
    best_step: int | None = None
    """The step at which `best_valid_loss` was scored."""
    precision: str | None = None
    """The precision of training: `fp32`, or `bf16` (autocast)."""
    eval_precision: str | None = None
    """The precision of every evaluation: always `fp32`."""
    seed: int | None = None
    """The random seed of the run (initialization, batches, dropout)."""
    device: str | None = None
    """What trained it: a GPU's name, or `cpu: <processor> (<n> threads)`."""
    world_size: int | None = None
    """Processes that trained it together (data parallel); 1 for one process."""
    torch_version: str | None = None
    """The version of PyTorch that trained it."""
    git_commit: str | None = None
    """The commit of the tinylm source that trained it (null outside a git checkout)."""
    status: Status
    """`running`, `interrupted`, `complete`, `stopped_early` or `diverged`; complete and stopped_early runs are
    finished."""
    profile: str | None = None
    """The profile whose unchanged suite trains exactly this config, `adhoc` for any other run (null where the code
    that trained it gave no label)."""
    updated: str | None = None
    """The local time of the last write, ISO 8601 with the UTC offset (`2026-11-27T14:03:52+0000`)."""
    valid_loss: float | None = None
    """Mean negative log-likelihood (nats/token) of the full valid split: the one rule that chooses the best run."""
    valid_loglik: float | None = None
    """Mean log-likelihood (nats/token, higher is better) of the full valid split: `-valid_loss`."""
    valid_perplexity: float | None = None
    """`exp(valid_loss)`."""
    valid_bits: float | None = None
    """`valid_loss / ln 2`: bits per token (per character at character level)."""
    valid_tokens: int | None = None
    """Tokens of the valid split scored: every one but the first."""
    test_loss: float | None = None
    """Mean negative log-likelihood (nats/token) of the full test split, with the best-on-valid weights."""
    test_loglik: float | None = None
    """Mean log-likelihood (nats/token, higher is better) of the full test split: the score the report shows."""
    test_perplexity: float | None = None
    """`exp(test_loss)`."""
    test_bits: float | None = None
    """`test_loss / ln 2`: bits per token (per character at character level)."""
    test_tokens: int | None = None
    """Tokens of the test split scored: every one but the first."""
    unigram_test_loglik: float | None = None
    """The test log-likelihood of add-one-smoothed unigram counts of the training split: a baseline."""
    test_window_loss: float | None = None
    """Reproduction splits only (data.split nanogpt): nanoGPT's estimate of the test loss, the mean over every
    position of 200 x 64 random windows of 256 tokens (`random_window_loss`), to compare with nanoGPT's numbers."""
    eval_stride: int | None = None
    """The stride S of the evaluation windows (the chunk length of a recurrent model)."""
    eval_window: int | None = None
    """The length W of the evaluation windows."""
    eval_note: str | None = None
    """How the splits were scored, in words."""

    def __post_init__(self) -> None:
        problems = _problems({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        if problems:
            raise TinyLMError(f"the metrics of a run are wrong: {'; '.join(problems)}")
        for name in FLOAT_FIELDS:  # an int is a fine number, but the field holds a float
            value = getattr(self, name)
            if isinstance(value, int):
                object.__setattr__(self, name, float(value))

    @classmethod
    def from_json(cls, data: Any, path: str | Path) -> RunMetrics:
        """The metrics in `data` (as read from the metrics.json at `path`), checked: a TinyLMError naming the file,
        the keys at fault and what to do if it is not a mapping, lacks a required key, has a key of no field, or a
        value of the wrong type (an integer counts as a number; true and false never do)."""
        if not isinstance(data, Mapping):
            raise TinyLMError(f"{path} is damaged: it holds a {type(data).__name__}, not the metrics of a run; {FIX}")
        problems = [f"the field '{key}' is missing" for key in REQUIRED if key not in data]
        problems += [_unknown(str(key)) for key in data if key not in FIELDS]
        problems += _problems({key: value for key, value in data.items() if key in FIELDS})
        if problems:
            raise TinyLMError(f"{path} is damaged: {'; '.join(problems)}; {FIX}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        """The mapping written to metrics.json: every field in order, a missing value as null (so `from_json` gives
        back an equal RunMetrics)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def finished(self) -> bool:
        """The run ended as planned (complete or stopped early) and was scored on the full splits."""
        return self.status in FINISHED

    @property
    def resumable(self) -> bool:
        """The run stopped (or was killed) before its end; the same command resumes it from its saved state."""
        return self.status in RESUMABLE

    @property
    def selection_loss(self) -> float:
        """The one rule for "the best run": the lower loss on the full validation split wins (test is never used).

        Runs without a full-split score (unfinished ones) never win: their selection loss is infinite.
        """
        return math.inf if self.valid_loss is None else self.valid_loss


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunMetrics))
"""The keys of metrics.json, in the order they are written."""
REQUIRED: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunMetrics)
                                  if f.default is dataclasses.MISSING)
"""The keys every metrics.json has."""
HINTS: dict[str, Any] = typing.get_type_hints(RunMetrics)
FLOAT_FIELDS: tuple[str, ...] = tuple(name for name in FIELDS if float in typing.get_args(HINTS[name]))
"""The fields that hold a number (an integer in the file is read as a float)."""
WANT = {str: "a string", int: "an integer", float: "a number", type(None): "null"}


def _fits(value: Any, hint: Any) -> bool:
    """`value` is of type `hint` as JSON sees it: an int is a float, a bool is never a number."""
    if typing.get_origin(hint) is Literal:
        return value in typing.get_args(hint)
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if isinstance(value, bool):
        return False
    return any(isinstance(value, (int, float) if t is float else t) for t in options)


def _want(hint: Any) -> str:
    """What a field of type `hint` must be, in words."""
    if typing.get_origin(hint) is Literal:
        *rest, last = typing.get_args(hint)
        return f"one of {', '.join(rest)} or {last}"
    return " or ".join(WANT[t] for t in typing.get_args(hint) or (hint,))


def _unknown(key: str) -> str:
    """The problem of a key that is no field, with the closest field (or every field) named."""
    close = difflib.get_close_matches(key, FIELDS, n=1, cutoff=0.6)
    known = f"did you mean '{close[0]}'?" if close else f"the fields are {', '.join(FIELDS)}"
    return f"'{key}' is not a field of metrics.json ({known})"


def _problems(values: dict[str, Any]) -> list[str]:
    """What is wrong with the type of each value of `values` (field name -> value), one sentence each."""
    return [f"'{key}' must be {_want(HINTS[key])}, not {value!r:.40}" for key, value in values.items()
            if not _fits(value, HINTS[key])]
