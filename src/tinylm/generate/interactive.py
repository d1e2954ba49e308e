"""Text from a trained run: one-shot generation and the interactive prompt (`tinylm chat`)."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import torch

from tinylm.config import RunConfig
from tinylm.data.tokenizers import EOS, UNK
from tinylm.errors import TinyLMError, UsageError
from tinylm.generate.sampling import generate_ids
from tinylm.models.registry import DEFAULT_MODEL, model_names
from tinylm.run_folders import (
    PICKLES,
    FoundRun,
    LoadedRun,
    ResultsOnly,
    best_run,
    config_changes,
    find_runs,
    identity,
    load_run,
    read_config,
    read_metrics,
    reference_dir,
    results_dir,
)
from tinylm.suite_file import load_suite_file, resolve_run


def check_sampling(
    temperature: float, top_k: int | None, top_p: float | None, length: int, seed: int | None = None
) -> None:
    """Reject sampling settings that make no sense, with what to use instead."""
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise UsageError(f"--temperature must be a finite number >= 0 (got {temperature}); 0 is greedy")
    if seed is not None and not 0 <= seed < 2**63:
        raise UsageError(f"--seed must be in [0, 2^63) (got {seed})")
    if top_k is not None and top_k < 0:
        raise UsageError(f"--top-k must be >= 0 (got {top_k}); 0 keeps every token")
    if top_p is not None and not 0 < top_p <= 1:
        raise UsageError(f"--top-p must be in (0, 1] (got {top_p})")
    if length < 0:
        raise UsageError(f"--length must be >= 0 (got {length})")


def resolve_run_dir(run_dir: str | None, model: str | None, dataset: str, results: str | None) -> Path:
    """The run directory given, or the best trained run of `model` (default transformer) on `dataset`, in your
    working folder or the shipped reference; a run without weights gets the command that trains it."""
    if run_dir:
        path = Path(run_dir)
        pickled = any((path / name).exists() for name in PICKLES)  # load_run refuses those, saying why
        if path.is_dir() and (path / "metrics.json").is_file() and not (path / "model.safetensors").is_file() \
                and not pickled:
            metrics = read_metrics(path)
            if metrics is not None and metrics.finished:
                raise _results_only(FoundRun(path, metrics, "reference" if _is_reference(path) else "yours"))
        return path
    try:
        return best_run(results_dir(results), model or DEFAULT_MODEL, dataset, reference_dir())
    except ResultsOnly as e:
        raise _results_only(e.run) from None


def _is_reference(path: Path) -> bool:
    ref = reference_dir()
    return ref is not None and ref.resolve() in path.resolve().parents


def duration(seconds: float) -> str:
    """Seconds as people say them: '40 s', '12.5 min', '3.1 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class ResultsOnlyRun(TinyLMError):
    """A run asked for holds results, not weights: the command that trains its model and dataset on this machine
    (`suggested`: its config, for a forecast), and a shipped run of the same model and dataset that has weights."""

    def __init__(self, run: FoundRun, command: str, suggested: RunConfig, shipped: Path | None):
        self.run, self.command, self.suggested, self.shipped = run, command, suggested, shipped
        super().__init__(self.message())

    def message(self, expected_seconds: float | None = None) -> str:
        """The one-line error, with the time the suggested training should take here where it was measured."""
        m = self.run.metrics
        text = f"{self.run.path} is {self.run.state}: it holds the results of a run, not its weights"
        if self.shipped is not None:
            text += (f"; the shipped run {self.shipped.name} of {m.model} on {m.dataset} has weights: "
                     f"tinylm generate {self.shipped}")
        expect = f" (expect ~{duration(expected_seconds)} here)" if expected_seconds is not None else ""
        return (f"{text}; to train {m.model} on {m.dataset} into your working folder: "
                f"{self.command}{expect}")


def _results_only(run: FoundRun) -> ResultsOnlyRun:
    shipped = [r for r in find_runs(None, reference_dir()) if r.finished and r.has_weights
               and r.metrics.model == run.metrics.model and r.metrics.dataset == run.metrics.dataset]
    best = min(shipped, key=lambda r: (r.metrics.selection_loss, str(r.path))).path if shipped else None
    command, suggested = command_here(run.path)
    return ResultsOnlyRun(run, command, suggested, best)


def command_here(run_dir: Path) -> tuple[str, RunConfig]:
    """The `tinylm train` command for a run's model and dataset on this machine, and its config: the run's own
    config (train_command), or, for a run trained on a GPU when this machine has none, the run of the same model
    and dataset in the first profile that trains on a CPU with a budget of tokens or steps."""
    cfg = read_config(run_dir)
    if not str(cfg.train.device).startswith("cuda") or torch.cuda.is_available():
        return train_command(run_dir), cfg
    suite = load_suite_file()
    for profile, prof in suite.profiles.items():
        if prof.flop_budgets or prof.sizes:
            continue  # a scaling profile trains many sizes of a model, none of them "the" run
        try:
            if cfg.model_name not in prof.datasets.get(cfg.data.label, []):
                continue
            here = resolve_run(cfg.model_name, cfg.data.label, suite=suite, profile=profile)
        except TinyLMError:
            continue
        if not str(here.train.device).startswith("cuda") and here.train.max_time is None:
            return f"tinylm train --model {cfg.model_name} --dataset {cfg.data.label} --profile {profile}", here
    return train_command(run_dir), cfg


def train_command(run_dir: Path) -> str:
    """The `tinylm train` command that trains the config saved in `run_dir` again (into your working folder)."""
    cfg = read_config(run_dir)
    suite = load_suite_file()
    metrics = read_metrics(run_dir)
    claimed = None if metrics is None else metrics.profile
    profiles = list(suite.profiles)
    # the claimed profile first, then any profile whose config is exactly the run's (a run trained with --set
    # overrides that a profile later adopted), else the claimed one with the differences as --set
    candidates = ([claimed] if claimed in profiles else []) + [p for p in profiles if p != claimed] + [None]
    words = ["tinylm", "train", "--model", cfg.model_name]
    words += ["--data", cfg.data.path, "--level", str(cfg.data.level)] if cfg.data.path is not None else \
        ["--dataset", cfg.data.label]

    def base_of(profile: str | None) -> RunConfig:
        if cfg.data.path is not None:
            return resolve_run(cfg.model_name, suite=suite, profile=profile, data=cfg.data)
        return resolve_run(cfg.model_name, cfg.data.label, suite=suite, profile=profile)

    exact = [p for p in candidates if p is not None and _resolves(base_of, p, cfg)]
    profile = exact[0] if exact else (claimed if claimed in profiles else None)
    base = base_of(profile)
    words += ["--profile", profile] if profile else []
    for section, key, _, value in config_changes(identity(base), identity(cfg)):
        words += ["--set", f"{section}.{key}={json.dumps(value)}"]  # JSON scalars are YAML too
    return " ".join(words)


def _resolves(base_of: Callable[[str | None], RunConfig], profile: str, cfg: RunConfig) -> bool:
    """Whether `profile` resolves to exactly `cfg` (a profile without this model or dataset does not)."""
    try:
        return identity(base_of(profile)) == identity(cfg)
    except TinyLMError:
        return False


def describe(run: LoadedRun, temperature: float, top_k: int | None, top_p: float | None, length: int) -> str:
    """One line naming the run and the sampling settings (printed by `generate` and `chat`)."""
    return (f"model {run.config.model_name} ({run.run_dir.name}), temperature {temperature}, "
            f"top-k {top_k or 'off'}, top-p {top_p or 'off'}, length {length}")


def encode_prompt(run: LoadedRun, prompt: str, warn: Callable[[str], None]) -> list[int]:
    """Prompt ids; unknown pieces are mapped to <unk> (or dropped) with a warning; all-unknown is an error."""
    tok = run.tokenizer
    if not prompt:
        return tok.start_ids()
    ids, unknown = tok.encode_with_unknowns(prompt)
    known = [i for i in ids.tolist() if i != tok.unk_id]
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10]) + (" …" if len(unknown) > 10 else "")
        fate = f"mapped to {UNK}" if tok.unk_id is not None else "dropped"
        kind = "characters" if tok.level == "char" else "words"
        if not known:
            raise TinyLMError(f"the prompt has no {kind} this model knows ({shown}); use text like its training data")
        warn(f"warning: {len(unknown)} prompt {kind} not in the vocabulary were {fate}: {shown}")
    if len(ids) == 0:
        return tok.start_ids()
    return ids.tolist()


def generate_text(
    run: LoadedRun,
    prompt: str,
    length: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    use_cache: bool = True,
    out: TextIO | None = None,
    warn: Callable[[str], None] = lambda m: None,
) -> str:
    """Continue `prompt` by `length` tokens, streaming the prompt and each new piece to `out`; returns the text."""
    ids = encode_prompt(run, prompt, warn)
    tok = run.tokenizer
    word = tok.level == "word"
    pieces = [prompt]
    line_start = not prompt or prompt.endswith("\n")
    if out is not None:
        out.write(prompt)
        out.flush()
    for i in generate_ids(run.model, ids, length, temperature, top_k, top_p, seed, use_cache):
        text = tok.tokens[i]
        if word:
            if text == EOS:
                text, line_start = "\n", True
            else:
                text, line_start = (text if line_start else " " + text), False
        pieces.append(text)
        if out is not None:
            out.write(text)
            out.flush()
    if out is not None:
        out.write("\n")
        out.flush()
    return "".join(pieces)


HELP = """commands:
  temp X      sampling temperature (0 = greedy)      topk N    keep the N most likely tokens (0 = all)
  topp P      nucleus mass in (0, 1]                 length N  tokens per answer
  model NAME  switch to the best run of NAME         help      this text
  quit        leave (Ctrl-D and Ctrl-C too)
anything else is a prompt to continue"""


class Chat:
    """A prompt loop: each line is continued by the model; a few commands change the sampling."""

    def __init__(
        self,
        run_dir: str | None = None,
        model: str | None = None,
        dataset: str = "tinyshakespeare",
        results: str | None = None,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        length: int = 200,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
    ):
        self.dataset, self.results = dataset, results
        self.run = load_run(resolve_run_dir(run_dir, model, dataset, results))
        self.temperature, self.top_k, self.top_p, self.length = temperature, top_k, top_p, length
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout

    def say(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def settings(self) -> str:
        return describe(self.run, self.temperature, self.top_k, self.top_p, self.length)

    def command(self, line: str) -> bool:
        """Handle a command line; False if the line is a prompt."""
        name, _, value = line.strip().partition(" ")
        value = value.strip()
        setters = {
            "temp": ("temp X (a number >= 0, e.g. temp 0.5)", float, lambda v: 0 <= v < math.inf, "temperature"),
            "topk": ("topk N (an integer >= 0; 0 keeps every token)", int, lambda v: v >= 0, "top_k"),
            "topp": ("topp P (a number in (0, 1])", float, lambda v: 0 < v <= 1, "top_p"),
            "length": ("length N (an integer >= 0)", int, lambda v: v >= 0, "length"),
        }
        if name in setters:
            usage, kind, ok, attr = setters[name]
            try:
                parsed = kind(value)
                if not ok(parsed):
                    raise ValueError
            except ValueError:
                self.say(f"usage: {usage}")
                return True
            setattr(self, attr, parsed)
            self.say(self.settings())
            return True
        if name == "model":
            if value not in model_names():
                self.say(f"usage: model NAME, one of: {', '.join(model_names())}")
                return True
            try:
                self.run = load_run(resolve_run_dir(None, value, self.dataset, self.results))
                self.say(self.settings())
            except TinyLMError as e:
                self.say(f"error: {e}")
            return True
        if name == "help" and not value:
            self.say(HELP)
            return True
        return False

    def read(self) -> str | None:
        """One line of input, or None at the end."""
        if self.stdin is sys.stdin and sys.stdin.isatty():
            try:
                import readline  # noqa: F401  (line editing and history for input())
            except ImportError:
                pass
            try:
                return input("> ")
            except EOFError:
                return None
        self.stdout.write("> ")
        self.stdout.flush()
        line = self.stdin.readline()
        return None if line == "" else line.rstrip("\n")

    def loop(self) -> int:
        """Run until quit, end of input or Ctrl-C; returns the exit status."""
        self.say(f"tinylm chat: {self.settings()}\ntype a prompt, or 'help' for commands")
        try:
            while True:
                line = self.read()
                if line is None or line.strip() in ("quit", "exit"):
                    break
                if not line.strip() or self.command(line):
                    continue
                if any("\udc80" <= ch <= "\udcff" for ch in line):  # bytes that were not UTF-8, kept as escapes
                    self.say("error: that line was not UTF-8 text; set your terminal to UTF-8 and type it again")
                    continue
                try:
                    generate_text(self.run, line, self.length, self.temperature, self.top_k, self.top_p,
                                  out=self.stdout, warn=self.say)
                except TinyLMError as e:
                    self.say(f"error: {e}")
        except KeyboardInterrupt:
            pass
        self.say("\nGoodbye!")
        return 0
