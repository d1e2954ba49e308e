"""What the playground page asks for, without HTTP: the runs it can show, a comparison of runs on a text (each
token's log-probability by the protocol, and the most likely tokens at its position), samples from several runs at
once, and the shipped results. Bad input is a UsageError or TinyLMError whose one line the page shows; nothing here
writes to disk.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tinylm.api import Run
from tinylm.data.tokenizers import EOS
from tinylm.errors import TinyLMError, UsageError
from tinylm.generate.interactive import check_sampling, generate_pieces
from tinylm.paths import Paths
from tinylm.run_folders import load_run, load_run_corpus, read_metrics, reference_dir
from tinylm.training.evaluate import score_tokens

MAX_CHARS = 200_000
"""Longer pastes are refused before they are tokenized."""
MAX_TOKENS = 20_000
"""Tokens scored at most per comparison: every model scores them twice (the protocol's targets and the top tokens),
so a comparison of five runs stays within seconds and a few hundred MB."""
MAX_RUNS = 5
MAX_LENGTH = 2_000
"""Tokens generated at most per run and request."""
TOP = 5
PASSAGE_TOKENS = 600
"""The default text: this many tokens from the start of the test split (characters or words)."""


@dataclass(frozen=True)
class RunEntry:
    """A run the page can list: its id (the folder's name, prefixed "reference/" for a shipped one) and summary."""

    id: str
    path: Path
    model: str
    dataset: str
    test_loglik: float | None
    has_weights: bool

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "dataset": self.dataset, "test_loglik": self.test_loglik,
                "has_weights": self.has_weights}


class Playground:
    """The runs of a working folder and of the shipped reference, loaded on first use and kept while their weights
    file is unchanged (a run trained or damaged meanwhile is read again)."""

    def __init__(self, paths: Paths, reference: Path | None = None, device: str = "cpu"):
        self.paths, self.device = paths, device
        self.reference = reference if reference is not None else reference_dir()
        self._loaded: dict[Path, tuple[float, Run]] = {}
        self._lock = threading.Lock()

    def runs(self) -> list[RunEntry]:
        """Your runs (any finished one), then the shipped ones that have weights, each group by dataset and model."""
        out = []
        for root, prefix, weights_only in ((self.paths.results, "", False), (self.reference, "reference/", True)):
            folder = root / "runs" if root is not None else None
            if folder is None or not folder.is_dir():
                continue
            found = []
            for path in sorted(folder.iterdir()):
                entry = _entry(path, prefix)
                if entry is not None and (entry.has_weights or not weights_only):
                    found.append(entry)
            out += sorted(found, key=lambda e: (e.dataset, e.model, e.id))
        return out

    def find(self, run_id: str) -> RunEntry:
        for entry in self.runs():
            if entry.id == run_id:
                return entry
        raise UsageError(f"no run '{run_id}' here (it may have been removed); reload the page")

    def load(self, run_id: str) -> Run:
        """The run with its weights, loaded once; a clear error for a run without weights or a damaged folder."""
        entry = self.find(run_id)
        weights = entry.path / "model.safetensors"
        if not entry.has_weights:
            raise UsageError(f"{run_id} has no weights (results only): train it with `tinylm train --model "
                             f"{entry.model} --dataset {entry.dataset}` to compare or sample it")
        with self._lock:
            stamp = weights.stat().st_mtime if weights.is_file() else -1.0
            cached = self._loaded.get(entry.path)
            if cached is None or cached[0] != stamp:
                try:
                    run = Run.of(load_run(entry.path))
                except TinyLMError as e:
                    raise TinyLMError(f"{run_id} could not be loaded: {e}") from None
                except Exception as e:  # a folder damaged while the server runs: said, not raised as a 500
                    raise TinyLMError(f"{run_id} could not be loaded ({type(e).__name__}: {e}); its folder may be "
                                      "damaged or being written") from None
                self._loaded[entry.path] = cached = (stamp, run)
            return cached[1]

    def passage(self, run_id: str) -> str:
        """The first PASSAGE_TOKENS tokens of the test split of the run's dataset."""
        run = self.load(run_id)
        try:
            tokens = load_run_corpus(run, self.paths).tensor("test")[:PASSAGE_TOKENS]
        except TinyLMError as e:
            raise TinyLMError(f"the test split of {run.config.data.label} could not be read ({e}); paste a text "
                              "instead") from None
        return _text(run, tokens.tolist())

    def compare(self, run_ids: list[str], text: str) -> dict[str, Any]:
        """Each token of `text` with, for each run, log p of it by the protocol, the mean (what `tinylm eval` and
        `Run.score` give on the same text) and the TOP most likely tokens at its position."""
        runs = self._runs(run_ids)
        ids, unknown = _encode(runs[0], text)
        tok = runs[0].tokenizer
        models = []
        for run_id, run in zip(run_ids, runs):
            s = score_tokens(run.model, torch.as_tensor(ids, dtype=torch.long), top=TOP, device=self.device)
            models.append({"id": run_id, "model": run.config.model_name, "mean": float(s.logp.mean()),
                           "logp": [None] + [round(float(v), 5) for v in s.logp],
                           "top": [None] + s.top_ids.tolist(), "top_logp": [None] + [
                               [round(float(v), 4) for v in row] for row in s.top_logp]})
        return {"dataset": runs[0].config.data.label, "level": tok.level, "tokens": [_shown(tok, i) for i in ids],
                "vocab": [_shown(tok, i) for i in range(len(tok.tokens))], "unknown": unknown, "models": models}

    def generate(self, run_ids: list[str], prompt: str, length: int, temperature: float, top_k: int | None,
                 top_p: float | None, seed: int | None) -> Iterator[dict[str, Any]]:
        """Events for the page: {"warning"} for the prompt, then {"run": index, "text": piece} from every run in
        turn, as each token is sampled, then {"done": true}. Errors in the request come before any event."""
        check_sampling(temperature, top_k, top_p, length, seed)
        if length > MAX_LENGTH:
            raise UsageError(f"length is at most {MAX_LENGTH:,} tokens here (got {length:,})")
        runs = self._runs(run_ids)
        warnings: list[str] = []
        streams = [generate_pieces(run, prompt, length, temperature, top_k, top_p, seed, warn=_collect(warnings,
                                                                                                  run_id))
                   for run_id, run in zip(run_ids, runs)]
        return _interleave(streams, warnings)

    def results(self) -> dict[str, Any]:
        """The shipped report's headline (results.json) and the names of its figures."""
        if self.reference is None or not (self.reference / "results.json").is_file():
            return {"headline": None, "figures": []}
        data = json.loads((self.reference / "results.json").read_text())
        figures = sorted(p.name for p in (self.reference / "figures").glob("*.png"))
        return {"headline": data.get("headline"), "figures": figures}

    def curve(self, run_id: str) -> list[dict[str, Any]]:
        """The run's evaluations (history.jsonl), for its curve."""
        path = self.find(run_id).path / "history.jsonl"
        try:
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except (OSError, ValueError) as e:
            raise TinyLMError(f"{run_id}'s history could not be read ({type(e).__name__}); its folder may be "
                              "damaged") from None

    def _runs(self, run_ids: list[str]) -> list[Run]:
        if not run_ids:
            raise UsageError("pick at least one run")
        if len(run_ids) > MAX_RUNS or len(set(run_ids)) != len(run_ids):
            raise UsageError(f"pick up to {MAX_RUNS} different runs")
        runs = [self.load(r) for r in run_ids]
        datasets = {run.config.data.label for run in runs}
        if len(datasets) > 1 or any(run.tokenizer.tokens != runs[0].tokenizer.tokens for run in runs):
            raise UsageError(f"pick runs of one dataset (these are on {', '.join(sorted(datasets))}): their tokens "
                             "must be the same to compare them")
        return runs


def _entry(path: Path, prefix: str) -> RunEntry | None:
    """A finished run folder as a RunEntry; None for anything else (unfinished, damaged, not a run)."""
    try:
        metrics = read_metrics(path)
    except Exception:  # a damaged metrics.json: not listed
        return None
    if metrics is None or not metrics.finished:
        return None
    return RunEntry(prefix + path.name, path, metrics.model, metrics.dataset, metrics.test_loglik,
                    (path / "model.safetensors").is_file())


def _encode(run: Run, text: str) -> tuple[list[int], list[str]]:
    if not text.strip():
        raise UsageError("the text is empty: paste a text or load a passage of the test split")
    if len(text) > MAX_CHARS:
        raise UsageError(f"the text has {len(text):,} characters; the playground scores at most {MAX_CHARS:,} "
                         f"characters and {MAX_TOKENS:,} tokens (in Python, `Run.score` scores longer texts)")
    ids, unknown = run.tokenizer.encode_with_unknowns(text)
    if unknown and run.tokenizer.unk_id is None:
        shown = ", ".join(repr(u) for u in unknown[:10])
        raise UsageError(f"the text has characters this model never saw ({shown}); the protocol has no way to score "
                         "them: remove them")
    if len(ids) > MAX_TOKENS:
        raise UsageError(f"the text has {len(ids):,} tokens; the playground scores at most {MAX_TOKENS:,} "
                         "(in Python, `Run.score` scores longer texts)")
    if len(ids) < 2:
        raise UsageError("the text has one token; scoring needs at least 2 (the first has no context)")
    return [int(i) for i in ids], sorted(set(unknown))


def _shown(tok: Any, i: int) -> str:
    text = tok.tokens[i]
    return "\n" if text == EOS else text


def _text(run: Run, ids: list[int]) -> str:
    if run.tokenizer.level == "char":
        return run.tokenizer.decode(ids)
    words = [_shown(run.tokenizer, i) for i in ids]
    return " ".join(words).replace(" \n ", "\n").replace(" \n", "\n")


def _collect(warnings: list[str], run_id: str) -> Callable[[str], None]:
    return lambda message: warnings.append(f"{run_id}: {message}")


def _interleave(streams: list[Iterator[str]], warnings: list[str]) -> Iterator[dict[str, Any]]:
    for message in warnings:
        yield {"warning": message}
    live = list(enumerate(streams))
    while live:
        for item in list(live):
            index, stream = item
            piece = next(stream, None)
            if piece is None:
                live.remove(item)
            else:
                yield {"run": index, "text": piece}
    yield {"done": True}
