"""Run directories: naming, locking, finding and loading them, and the one rule for "the best run".

Two places hold runs: your working folder (`results/`, ignored by git: everything you train goes there) and the
shipped reference (`results/reference/`: results, and the weights of the headline Tiny Shakespeare runs with their
checksums in weights.json; regenerated only by the maintainers' suite).

results/runs/<run-id>/
    config.yaml        fully resolved config (model, train, data)
    tokenizer.json     the tokenizer
    model.safetensors  weights that were best on valid
    last/              resume state (checkpoint.safetensors: weights, optimizer, step, RNG)
    history.jsonl      one line per evaluation
    metrics.json       final numbers and status
    samples.txt        a short generated sample
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tinylm.config import RunConfig
from tinylm.data.corpus import Corpus, load_corpus
from tinylm.data.sources import canonical_name, sha256_file
from tinylm.data.tokenizers import Tokenizer, load_tokenizer
from tinylm.errors import TinyLMError, TinyLMWarning, UsageError
from tinylm.files import load_tensors, read_json
from tinylm.models.base import LanguageModel
from tinylm.models.registry import build_model
from tinylm.suite_file import parse_overrides

FINISHED = ("complete", "stopped_early")
PICKLES = ("model.pt", "model.bin", "pytorch_model.bin", "model.pth")
"""Checkpoint names of pickle-based formats, which tinylm refuses to load."""
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def results_dir(path: str | Path | None = None) -> Path:
    """Your working folder: the argument, else $TINYLM_RESULTS_DIR, else ./results; a file there is refused."""
    root = Path(path or os.environ.get("TINYLM_RESULTS_DIR") or "results")
    if root.is_file():
        raise UsageError(f"the results folder {root} is a file; pass a folder with --results-dir (or "
                         "TINYLM_RESULTS_DIR)")
    return root


REFERENCE_ENV = "TINYLM_REFERENCE_DIR"


def reference_dir() -> Path | None:
    """The shipped reference results: $TINYLM_REFERENCE_DIR (empty: none), else results/reference of the current
    directory, else the one of the checkout the package runs from; None where there is none."""
    env = os.environ.get(REFERENCE_ENV)
    if env is not None:
        return Path(env) if env else None
    for candidate in (Path("results/reference"), Path(__file__).resolve().parents[2] / "results" / "reference"):
        if (candidate / "runs").is_dir():
            return candidate
    return None


def identity(cfg: RunConfig) -> dict[str, Any]:
    """What makes two configs the same run: everything but where and how it executes (device, compile)."""
    d = cfg.to_dict()
    d["train"] = {k: v for k, v in d["train"].items() if k not in ("device", "compile")}
    return d


def config_changes(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """(section, key, value in a, value in b) for every key in which two identities differ."""
    out = []
    for section in sorted(set(a) | set(b)):
        sa, sb = a.get(section) or {}, b.get(section) or {}
        out += [(section, key, sa.get(key), sb.get(key)) for key in sorted(set(sa) | set(sb))
                if sa.get(key) != sb.get(key)]
    return out


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    """'section.key: old -> new' for every differing key of two identities."""
    return ", ".join(f"{s}.{k}: {old!r} -> {new!r}" for s, k, old, new in config_changes(a, b)) or "no differences"


def config_digest(cfg: RunConfig) -> str:
    """A short digest of the run's identity: equal runs, equal digests."""
    return hashlib.sha256(json.dumps(identity(cfg), sort_keys=True).encode()).hexdigest()[:8]


def run_id(cfg: RunConfig) -> str:
    """Default run name: <dataset>-<model>-<digest>."""
    return f"{cfg.data.label}-{cfg.model_name}-{config_digest(cfg)}"


def check_run_name(name: str) -> str:
    """A run name must be one plain path component (no '/', '..' or absolute paths)."""
    if not RUN_NAME.match(name) or ".." in name:
        raise UsageError(
            f"--run-name '{name}' is not a plain name; use letters, digits, '.', '_' and '-' only (no '/' or '..')"
        )
    return name


class RunLock:
    """An exclusive lock on a run directory; the OS releases it when the process dies."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self.fd)
            self.fd = None
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise TinyLMError(
                    f"run directory {self.path.parent} is in use by another training process; wait for it to end "
                    "or choose another --run-name"
                ) from None
            raise
        os.ftruncate(self.fd, 0)
        os.write(self.fd, str(os.getpid()).encode())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def read_config(run_dir: Path) -> RunConfig:
    """The resolved config saved with a run."""
    path = run_dir / "config.yaml"
    if run_dir.is_file():
        raise TinyLMError(f"{run_dir} is a file, not a run directory; pass a folder under results/runs/")
    if not path.is_file():
        raise TinyLMError(f"{run_dir} is not a run directory (no config.yaml); pass a folder under results/runs/")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise TinyLMError(f"{path} is corrupted ({type(e).__name__}); train the run again") from None
    if data is None:
        raise TinyLMError(f"{path} is empty: the run's config is lost; restore the file (e.g. from git) or train the "
                          "run again")
    return RunConfig.from_dict(data, str(path))


def resume_config(run_dir: Path, train_values: dict[str, Any] | None = None,
                  sets: list[str] | None = None) -> RunConfig:
    """The saved config of a run to resume with training values and `--set` overrides laid on it: the device and
    compile may change; any other difference would make another run, and is refused."""
    saved = read_config(run_dir)
    over = parse_overrides(sets)
    d = saved.to_dict()
    d["model"].update(over["model"])
    d["train"].update({**{k: v for k, v in (train_values or {}).items() if v is not None}, **over["train"]})
    d["data"].update(over["data"])
    asked = RunConfig.from_dict(d, "the command line")
    if identity(asked) != identity(saved):
        raise UsageError(f"--resume {run_dir}: the config given differs from the saved one "
                         f"({config_diff(identity(saved), identity(asked))}); drop those options to resume")
    return asked


#: The fields of metrics.json that tinylm reads, and their types (None is allowed where a value can be missing).
METRICS_FIELDS: dict[str, tuple[type, ...]] = {
    "model": (str,), "dataset": (str,), "status": (str,), "profile": (str, type(None)), "device": (str, type(None)),
    "params": (int, type(None)), "vocab_size": (int, type(None)), "steps": (int, type(None)),
    "tokens_trained": (int, type(None)), "best_step": (int, type(None)), "context_length": (int, type(None)),
    "world_size": (int, type(None)),
    **{k: (int, float, type(None)) for k in (
        "train_flops", "train_seconds", "tokens_per_second", "best_valid_loss", "valid_loss", "valid_loglik",
        "test_loss", "test_loglik", "test_perplexity", "test_bits", "unigram_test_loglik")},
}
REQUIRED_METRICS = ("model", "dataset", "status")


def check_metrics(data: Any, path: Path) -> dict[str, Any]:
    """`data` if it has the shape of a metrics.json, else a TinyLMError saying what is wrong and what to do."""
    fix = "delete the run folder or train the run again"
    if not isinstance(data, dict):
        raise TinyLMError(f"{path} is damaged: it holds a {type(data).__name__}, not the metrics of a run; {fix}")
    for key in REQUIRED_METRICS:
        if key not in data:
            raise TinyLMError(f"{path} is damaged: the field '{key}' is missing; {fix}")
    for key, types in METRICS_FIELDS.items():
        value = data.get(key)
        if key in data and (not isinstance(value, types) or isinstance(value, bool)):
            want = " or ".join("null" if t is type(None) else {"str": "a string", "int": "an integer", "float":
                               "a number"}[t.__name__] for t in types)
            raise TinyLMError(f"{path} is damaged: '{key}' must be {want}, not {value!r:.40}; {fix}")
    return data


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """metrics.json of a run (checked for its shape and types), or None if it has none."""
    path = run_dir / "metrics.json"
    return check_metrics(read_json(path), path) if path.is_file() else None


@dataclass
class LoadedRun:
    """A trained model ready for evaluation or generation."""

    run_dir: Path
    config: RunConfig
    tokenizer: Tokenizer
    model: LanguageModel


WEIGHTS_MANIFEST = "weights.json"
"""Beside the shipped runs (results/reference/weights.json): the sha256 and size of each model.safetensors shipped."""


def shipped_weights(reference: Path) -> dict[str, dict[str, Any]]:
    """{run id: {"sha256", "bytes"}} of the weights shipped under `reference` ({} where none are)."""
    path = reference / WEIGHTS_MANIFEST
    return read_json(path) if path.is_file() else {}


def check_shipped_weights(path: Path, run_dir: Path) -> None:
    """Shipped weights are loaded only as they were shipped: a file whose sha256 differs is named, never loaded."""
    entry = shipped_weights(run_dir.parent.parent).get(run_dir.name)
    if entry is not None and sha256_file(path) != entry["sha256"]:
        raise TinyLMError(f"{path} is damaged: its sha256 is not the one shipped in "
                          f"{run_dir.parent.parent / WEIGHTS_MANIFEST}; restore it (git checkout -- {path})")


def load_weights(model: LanguageModel, path: Path, run_dir: Path, model_name: str) -> None:
    """Load safetensors weights into `model`, with a clear error if they do not fit."""
    check_shipped_weights(path, run_dir)
    tensors, _ = load_tensors(path)
    expected = model.weights()
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or extra or wrong:
        detail = (missing or extra or wrong)[0]
        raise TinyLMError(
            f"{path} does not fit the {model_name} model of {run_dir / 'config.yaml'} "
            f"({'missing' if missing else 'unexpected' if extra else 'wrong shape for'} tensor '{detail}'); "
            "the weights belong to another model or config: train the run again"
        )
    model.load_weights(tensors)


def load_run(run_dir: str | Path, weights: str = "model.safetensors") -> LoadedRun:
    """Load a run directory's config, tokenizer and best weights (no pickle anywhere)."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        raise TinyLMError(f"{run_dir} is a file, not a run directory; pass a folder under results/runs/ "
                          "(`tinylm runs` lists them)")
    if not run_dir.is_dir():
        raise TinyLMError(f"run directory {run_dir} does not exist; list runs with `tinylm runs`")
    for stray in PICKLES:
        if (run_dir / stray).exists() and not (run_dir / weights).exists():
            raise TinyLMError(
                f"{run_dir / stray} is a pickle-based checkpoint, which tinylm never loads (it can run code); "
                "only model.safetensors is used"
            )
    cfg = read_config(run_dir)
    tok = load_tokenizer(run_dir / "tokenizer.json")
    check_tokenizer(run_dir, cfg, tok)
    model = build_model(cfg.model_name, cfg.model_config(tok.vocab_size, tok.counts))
    path = run_dir / weights
    if not path.is_file():
        raise TinyLMError(f"{path} does not exist; the run has no trained weights yet (train or resume it)")
    load_weights(model, path, run_dir, cfg.model_name)
    model.eval()
    return LoadedRun(run_dir, cfg, tok, model)


def check_tokenizer(run_dir: Path, cfg: RunConfig, tok: Tokenizer) -> None:
    """The run's tokenizer must fit its config (level) and the vocabulary it was trained with (metrics.json)."""
    where = run_dir / "tokenizer.json"
    if cfg.data.level is not None and tok.level != cfg.data.level:
        raise TinyLMError(f"{where} is a {tok.level}-level tokenizer but the run's config is {cfg.data.level}-level: "
                          "the tokenizer belongs to another run; restore this run's tokenizer.json or train it again")
    try:
        trained = (read_metrics(run_dir) or {}).get("vocab_size")
    except TinyLMError:
        trained = None
    if trained is not None and trained != tok.vocab_size:
        raise TinyLMError(f"{where} has {tok.vocab_size:,} tokens but the run was trained with a vocabulary of "
                          f"{trained:,} (metrics.json): the tokenizer belongs to another run; restore this run's "
                          "tokenizer.json or train it again")


def load_run_corpus(run: LoadedRun, data_dir: str | Path | None = None, mirror: str | Path | None = None) -> Corpus:
    """The corpus a loaded run was trained on; an error if its tokenizer no longer matches the data."""
    corpus = load_corpus(run.config.data, data_dir, mirror, quiet=True)
    if corpus.tokenizer.tokens != run.tokenizer.tokens:
        raise TinyLMError(f"the tokenizer of {run.run_dir} does not match the dataset's; the data has changed")
    return corpus


def scan_runs(root: Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[tuple[Path, str]]]:
    """(run dir, metrics) of every run under root/runs with readable metrics, and (run dir, why) of the others."""
    good, bad = [], []
    for d in sorted((root / "runs").glob("*")):
        if not d.is_dir() or not (d / "metrics.json").exists():
            continue
        try:
            good.append((d, read_metrics(d) or {}))
        except TinyLMError as e:
            bad.append((d, str(e)))
    return good, bad


def list_runs(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(run dir, metrics) of every run under root/runs that has readable metrics."""
    return scan_runs(root)[0]


@dataclass
class FoundRun:
    """A run directory, its metrics and where it lives: "yours" (the working folder) or "reference" (shipped)."""

    path: Path
    metrics: dict[str, Any]
    source: str

    @property
    def has_weights(self) -> bool:
        return (self.path / "model.safetensors").is_file()

    @property
    def finished(self) -> bool:
        return self.metrics.get("status") in FINISHED

    @property
    def state(self) -> str:
        """What can be done with it: its status ("weights shipped" added for a shipped run with weights), or
        "results only" for a finished run without weights."""
        if self.finished and not self.has_weights:
            return "results only (weights not shipped)" if self.source == "reference" else "results only (no weights)"
        shipped = ", weights shipped" if self.source == "reference" and self.has_weights else ""
        return f"{self.metrics.get('status', '?')}{shipped}"


def find_runs(working: Path | None, reference: Path | None = None) -> list[FoundRun]:
    """Every run of your working folder, then every run of the shipped reference (if given); a run folder whose
    metrics.json is damaged is left out with a warning that names it and the reason."""
    roots = [(working, "yours")] if working is not None else []
    if reference is not None and (working is None or reference.resolve() != working.resolve()):
        roots.append((reference, "reference"))
    found = []
    for root, source in roots:
        good, bad = scan_runs(root)
        found += [FoundRun(d, m, source) for d, m in good]
        for d, why in bad:
            warnings.warn(f"skipped {d}: {why}", TinyLMWarning, stacklevel=2)
    return found


class ResultsOnly(TinyLMError):
    """The best run asked for has results but no weights (a shipped reference run): it must be trained first."""

    def __init__(self, run: FoundRun):
        super().__init__(f"the best {run.metrics.get('model')} run on {run.metrics.get('dataset')} ({run.path}) is "
                         f"{run.state}; train it first")
        self.run = run


def selection_loss(metrics: dict[str, Any]) -> float:
    """The one rule for "the best run": the lower loss on the full validation split wins (test is never used).

    Runs without a full-split score (unfinished ones) never win.
    """
    value = metrics.get("valid_loss")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.inf


def best_run(working: Path, model: str, dataset: str, reference: Path | None = None) -> Path:
    """The finished run of `model` on `dataset` with weights, best by `selection_loss`: among your runs where you
    have one (yours win), else among the shipped reference's; ResultsOnly if only runs without weights exist."""
    try:
        dataset = canonical_name(dataset)
    except UsageError:
        pass
    candidates = [r for r in find_runs(working, reference)
                  if r.metrics.get("model") == model and r.metrics.get("dataset") == dataset and r.finished]
    trained = [r for r in candidates if r.has_weights]
    trained = [r for r in trained if r.source == "yours"] or trained
    if trained:
        return min(trained, key=lambda r: (selection_loss(r.metrics), str(r.path))).path
    if candidates:
        raise ResultsOnly(min(candidates, key=lambda r: (selection_loss(r.metrics), str(r.path))))
    raise TinyLMError(
        f"no trained {model} run on {dataset} under {working / 'runs'}; train one first: "
        f"tinylm train --model {model} --dataset {dataset} --quick"
    )
