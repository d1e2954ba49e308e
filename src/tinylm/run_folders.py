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
from tinylm.paths import Paths
from tinylm.run_metrics import FIX, RunMetrics
from tinylm.suite_file import parse_overrides, parse_yaml

PICKLES = ("model.pt", "model.bin", "pytorch_model.bin", "model.pth")
"""Checkpoint names of pickle-based formats, which tinylm refuses to load."""
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


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
    return identity_of(cfg.to_dict())


def identity_of(config: dict[str, Any], ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """`identity` of a config as a dict (config.yaml's), without the training keys in `ignore` too."""
    d = dict(config)
    d.pop("plugin", None)  # where a plugin's file is, not what it computes
    d["train"] = {k: v for k, v in (d.get("train") or {}).items() if k not in ("device", "compile", *ignore)}
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
    """An exclusive lock on a run directory; the OS releases it when the process dies.

    `remove_if_unused`: the folders the lock created are removed again if nothing but the lock was written to them
    (a run refused before its first file leaves no trace).
    """

    def __init__(self, run_dir: Path, remove_if_unused: bool = False):
        self.path = run_dir / ".lock"
        self.fd: int | None = None
        self.created = [d for d in (run_dir, *run_dir.parents) if not d.exists()] if remove_if_unused else []

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
        if self.fd is None:
            return
        if self.created and [p.name for p in self.path.parent.iterdir()] == [self.path.name]:
            self.path.unlink()  # still ours: removed while we hold it
            for folder in self.created:
                if any(folder.iterdir()):
                    break
                folder.rmdir()
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
        data = parse_yaml(path.read_text(encoding="utf-8"))
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


def read_metrics(run_dir: Path) -> RunMetrics | None:
    """metrics.json of a run (checked for its shape and types), or None if it has none."""
    path = run_dir / "metrics.json"
    return RunMetrics.from_json(read_json(path), path) if path.is_file() else None


def saved_profile(run_dir: Path) -> str | None:
    """The profile label a run was trained with (None if it has no metrics yet)."""
    metrics = read_metrics(run_dir)
    return None if metrics is None else metrics.profile


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
        metrics = read_metrics(run_dir)
    except TinyLMError:
        metrics = None
    trained = None if metrics is None else metrics.vocab_size
    if trained is not None and trained != tok.vocab_size:
        raise TinyLMError(f"{where} has {tok.vocab_size:,} tokens but the run was trained with a vocabulary of "
                          f"{trained:,} (metrics.json): the tokenizer belongs to another run; restore this run's "
                          "tokenizer.json or train it again")


def load_run_corpus(run: LoadedRun, paths: Paths | None = None) -> Corpus:
    """The corpus a loaded run was trained on; an error if its tokenizer no longer matches the data."""
    paths = paths or Paths.of()
    corpus = load_corpus(run.config.data, paths.data, paths.mirror, quiet=True)
    if corpus.tokenizer.tokens != run.tokenizer.tokens:
        raise TinyLMError(f"the tokenizer of {run.run_dir} does not match the dataset's; the data has changed")
    return corpus


def scan_runs(root: Path) -> tuple[list[tuple[Path, RunMetrics]], list[tuple[Path, str]]]:
    """(run dir, metrics) of every run under root/runs with readable metrics, and (run dir, why) of the others."""
    good, bad = [], []
    for d in sorted((root / "runs").glob("*")):
        if not d.is_dir() or not (d / "metrics.json").exists():
            continue
        try:
            metrics = read_metrics(d)
            if metrics is None:
                raise TinyLMError(f"{d / 'metrics.json'} is not a file; {FIX}")
        except TinyLMError as e:
            bad.append((d, str(e)))
        else:
            good.append((d, metrics))
    return good, bad


def list_runs(root: Path) -> list[tuple[Path, RunMetrics]]:
    """(run dir, metrics) of every run under root/runs that has readable metrics."""
    return scan_runs(root)[0]


@dataclass
class RunFolder:
    """A run directory, its metrics and where it lives: "yours" (the working folder) or "reference" (shipped)."""

    path: Path
    metrics: RunMetrics
    source: str

    @property
    def has_weights(self) -> bool:
        return (self.path / "model.safetensors").is_file()

    @property
    def finished(self) -> bool:
        return self.metrics.finished

    @property
    def state(self) -> str:
        """What can be done with it: its status ("weights shipped" added for a shipped run with weights), or
        "results only" for a finished run without weights."""
        if self.finished and not self.has_weights:
            return "results only (weights not shipped)" if self.source == "reference" else "results only (no weights)"
        shipped = ", weights shipped" if self.source == "reference" and self.has_weights else ""
        return f"{self.metrics.status}{shipped}"


def find_runs(working: Path | None, reference: Path | None = None) -> list[RunFolder]:
    """Every run of your working folder, then every run of the shipped reference (if given); a run folder whose
    metrics.json is damaged is left out with a warning that names it and the reason."""
    roots = [(working, "yours")] if working is not None else []
    if reference is not None and (working is None or reference.resolve() != working.resolve()):
        roots.append((reference, "reference"))
    found = []
    for root, source in roots:
        good, bad = scan_runs(root)
        found += [RunFolder(d, m, source) for d, m in good]
        for d, why in bad:
            warnings.warn(f"skipped {d}: {why}", TinyLMWarning, stacklevel=2)
    return found


class ResultsOnly(TinyLMError):
    """The best run asked for has results but no weights (a shipped reference run): it must be trained first."""

    def __init__(self, run: RunFolder):
        super().__init__(f"the best {run.metrics.model} run on {run.metrics.dataset} ({run.path}) is "
                         f"{run.state}; train it first")
        self.run = run


def best_run(working: Path, model: str, dataset: str, reference: Path | None = None) -> Path:
    """The finished run of `model` on `dataset` with weights, best by `RunMetrics.selection_loss`: among your runs
    where you have one (yours win), else among the shipped reference's; ResultsOnly if only runs without weights
    exist."""
    try:
        dataset = canonical_name(dataset)
    except UsageError:
        pass
    candidates = [r for r in find_runs(working, reference)
                  if r.metrics.model == model and r.metrics.dataset == dataset and r.finished]
    trained = [r for r in candidates if r.has_weights]
    trained = [r for r in trained if r.source == "yours"] or trained
    if trained:
        return min(trained, key=lambda r: (r.metrics.selection_loss, str(r.path))).path
    if candidates:
        raise ResultsOnly(min(candidates, key=lambda r: (r.metrics.selection_loss, str(r.path))))
    raise TinyLMError(
        f"no trained {model} run on {dataset} under {working / 'runs'}; train one first: "
        f"tinylm train --model {model} --dataset {dataset} --quick"
    )
