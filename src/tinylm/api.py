"""The Python API: load, train, generate from and score runs in a notebook; the CLI is built on the same functions.

    >>> import tinylm
    >>> run = tinylm.load(model="transformer", dataset="tinyshakespeare")  # doctest: +SKIP
    >>> run.generate("ROMEO:", length=200, temperature=0.8, top_p=0.9, seed=1)  # doctest: +SKIP
    >>> run.score("To be, or not to be").loglik  # doctest: +SKIP
    >>> tinylm.suite("quick", models=["linear"])  # doctest: +SKIP

Every score is the common protocol's (tinylm.training.evaluate): the same numbers `tinylm eval` prints.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, TextIO

from tinylm.config import DataConfig, TrainConfig
from tinylm.data.sources import SPLITS
from tinylm.device import pick_device
from tinylm.errors import TinyLMError, TinyLMWarning, UsageError
from tinylm.fields import field_names, unknown_key_error
from tinylm.generate.interactive import check_sampling, generate_text
from tinylm.models.registry import DEFAULT_MODEL, check_name, config_class
from tinylm.paths import Paths
from tinylm.ray_pool import RayOptions
from tinylm.recorder import forecast_run, train_run
from tinylm.run_folders import LoadedRun, load_run, load_run_corpus, read_metrics
from tinylm.run_lookup import ResultsOnlyRun, resolve_run_dir
from tinylm.run_metrics import RunMetrics
from tinylm.suite_file import budget_resets, load_suite_file, resolve_run
from tinylm.suite_plan import profile_label
from tinylm.suite_runner import SuiteResult, run_suite
from tinylm.training.evaluate import EvalResult, evaluate

__all__ = ["EvalResult", "Run", "SuiteResult", "find", "load", "suite", "train"]

class Run(LoadedRun):
    """A trained run: its directory (`path`), config, tokenizer and best-on-valid weights (`model`, in eval mode)."""

    @classmethod
    def of(cls, loaded: LoadedRun) -> Run:
        return cls(loaded.run_dir, loaded.config, loaded.tokenizer, loaded.model)

    @property
    def path(self) -> Path:
        """The run directory."""
        return self.run_dir

    @property
    def metrics(self) -> RunMetrics | None:
        """metrics.json of the run (None if it has none), e.g. `run.metrics.test_loglik`."""
        return read_metrics(self.path)

    def __repr__(self) -> str:
        m = self.metrics
        test, params = (None, None) if m is None else (m.test_loglik, m.params)
        score = f", test {test:.4f} nats/token" if test is not None else ""
        return (f"Run({self.config.model_name} on {self.config.data.label}, {params or 0:,} params{score}, "
                f"'{self.path}')")

    def generate(
        self,
        prompt: str = "",
        length: int = 200,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        use_cache: bool = True,
        stream: TextIO | None = None,
    ) -> str:
        """The prompt and `length` new tokens sampled after it (temperature 0: greedy; top-k/top-p: truncation).

        With `stream`, the text is also written there piece by piece (as `tinylm generate` prints it). Words of
        the prompt the vocabulary lacks become `<unk>` with a TinyLMWarning (characters: dropped); none known is an
        error.
        """
        check_sampling(temperature, top_k, top_p, length, seed)
        return generate_text(self, prompt, length, temperature, top_k, top_p, seed, use_cache=use_cache,
                             out=stream, warn=_warn)

    def score(self, text: str, stride: int | None = None, device: str = "cpu") -> EvalResult:
        """Log-likelihood of `text` by the common protocol: every token after the first scored once.

        `.loglik` is nats per token (`.perplexity`, `.bits` beside it). Word-level runs map unknown words to
        `<unk>`, as their corpus does; a character the vocabulary lacks is an error (dropping it would score
        another text).
        """
        ids, unknown = self.tokenizer.encode_with_unknowns(text)
        if unknown and self.tokenizer.unk_id is None:
            shown = ", ".join(repr(u) for u in unknown[:10])
            raise UsageError(f"the text has characters this model never saw ({shown}); remove them to score it")
        if len(ids) < 2:
            raise UsageError(f"the text has {len(ids)} token(s); scoring needs at least 2 (the first has no context)")
        return self._evaluate(ids, stride, device)

    def evaluate(self, split: str = "test", stride: int | None = None, device: str = "cpu",
                 data_dir: str | Path | None = None, mirror: str | Path | None = None) -> EvalResult:
        """Score a split of the run's dataset by the common protocol (what `tinylm eval` prints)."""
        if split not in SPLITS:
            raise UsageError(f"unknown split '{split}'; choose one of: {', '.join(SPLITS)}")
        corpus = load_run_corpus(self, Paths.of(data=data_dir, mirror=mirror))
        return self._evaluate(corpus.tensor(split), stride, device)

    def _evaluate(self, tokens: Any, stride: int | None, device: str) -> EvalResult:
        dev = pick_device(device)
        self.model.to(dev)
        return evaluate(self.model, tokens, batch_size=64, stride=stride, device=dev)


def _warn(message: str) -> None:
    warnings.warn(message, TinyLMWarning, stacklevel=4)


def find(path: str | Path | None = None, *, model: str | None = None, dataset: str = "tinyshakespeare",
         results: str | Path | None = None) -> Path:
    """The run directory `load` loads. A run with results but no weights is an error that says how to train its
    model and dataset here and how long that should take (a forecast measured on this machine for a second)."""
    if path is not None and model is not None:
        raise UsageError("give a run directory or a model, not both")
    try:
        return resolve_run_dir(None if path is None else str(path), model or DEFAULT_MODEL, dataset,
                               None if results is None else str(results))
    except ResultsOnlyRun as e:
        try:
            info = forecast_run(e.suggested)
        except Exception:  # a courtesy: without data or the device to measure on, the command alone
            raise e from None
        raise TinyLMError(e.message(info["train_seconds"] + info["eval_seconds"])) from None


def load(path: str | Path | None = None, *, model: str | None = None, dataset: str = "tinyshakespeare",
         results: str | Path | None = None) -> Run:
    """A run directory, or the best trained run of `model` on `dataset` (chosen on the full validation split):
    yours where you have one, else the shipped reference's (its headline Tiny Shakespeare runs ship with weights)."""
    return Run.of(load_run(find(path, model=model, dataset=dataset, results=results)))


def split_overrides(model: str, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword overrides as (model values, train values): each key is a field of the model's config or of
    TrainConfig; anything else is a UsageError naming the closest keys."""
    model_keys, train_keys = field_names(config_class(model)), field_names(TrainConfig)
    m, t = {}, {}
    for key, value in overrides.items():
        if key in model_keys and key not in ("vocab_size",):
            m[key] = value
        elif key in train_keys:
            t[key] = value
        else:
            raise unknown_key_error(key, sorted((set(model_keys) - {"vocab_size"}) | set(train_keys)),
                                    f"tinylm.train(model='{model}')")
    return m, t


def train(
    model: str = DEFAULT_MODEL,
    dataset: str = "tinyshakespeare",
    *,
    quick: bool = False,
    profile: str | None = None,
    data: str | Path | None = None,
    level: str | None = None,
    results: str | Path | None = None,
    run_name: str | None = None,
    force: bool = False,
    quiet: bool = False,
    log: str | None = None,
    **overrides: Any,
) -> Run:
    """Train one run (or return the finished one with the same config) and load it, as `tinylm train` does.

    `overrides` are fields of the model's config or of TrainConfig (e.g. `embed_dim=64, max_steps=200`); the
    suite file's defaults and the profile (`quick=True` is profile "quick") fill in the rest. `data` is a text
    file or folder of yours (with `level` "char" or "word") instead of a registered dataset. `log="tensorboard"`
    also writes TensorBoard events under the run directory.
    """
    if quick and profile not in (None, "quick"):
        raise UsageError("quick=True is profile 'quick'; give one of them")
    profile = "quick" if quick else profile
    suite_file = load_suite_file()
    data_cfg = None
    if data is not None:
        data_cfg = DataConfig.text(data, level)
    elif level is not None:
        raise UsageError("level applies to data=... files only; registered datasets have a fixed level")
    model = check_name(model)  # a plugin's path, module or entry point -> its registered name
    model_values, train_values = split_overrides(model, overrides)
    cfg = resolve_run(model, dataset, suite=suite_file, profile=profile, model_values=model_values,
                      train_values=train_values, data=data_cfg)
    label = profile_label(suite_file, cfg, profile)
    metrics, run_dir, _ = train_run(cfg, Paths.of(results), run_name=run_name, force=force, quiet=quiet,
                                    profile=label, logs=(log,) if log else ())
    if not (run_dir / "model.safetensors").is_file():
        raise TinyLMError(f"{run_dir} finished as '{metrics.status}' without weights")
    return Run.of(load_run(run_dir))


def suite(
    profile: str = "quick",
    *,
    config: str | Path | None = None,
    models: list[str] | None = None,
    datasets: list[str] | None = None,
    results: str | Path | None = None,
    jobs: int = 1,
    ray: RayOptions | bool = False,
    quiet: bool = False,
    log: str | None = None,
    data_dir: str | Path | None = None,
    mirror: str | Path | None = None,
    sets: list[str] | None = None,
    **overrides: Any,
) -> list[SuiteResult]:
    """Train every run of a profile, skipping finished ones, after the missing n-gram baselines of its datasets, as
    `tinylm suite --profile PROFILE` does; returns each run (`.run_dir`, `.metrics`, `.profile`) in the plan's order.

    `config` is a suite file of yours (default configs/default.yaml); `models` and `datasets` restrict the profile
    (a dataset outside it is added); `jobs` trains that many runs at once, each in a process of its own; `ray`
(True, or `RayOptions(address=..., cpus_per_run=..., gpus_per_run=...)`) makes each run a task on a Ray cluster,
as `--backend ray` does. `overrides`
    are TrainConfig fields for every run (e.g. `max_steps=200`: a budget given replaces the file's budgets, as on
    the command line) and `sets` are `--set` overrides (`["model.dropout=0.2"]`); runs they change are recorded as
    "adhoc", not as the profile's.
    """
    keys = field_names(TrainConfig)
    for key in overrides:
        if key not in keys:
            raise unknown_key_error(key, keys, "tinylm.suite (training fields; model fields go in sets=[...])")
    ray = RayOptions() if ray is True else ray or None
    if ray is not None:
        ray.check()  # before the baselines: a missing Ray is said at once
    return run_suite(load_suite_file(config), profile, only=models, datasets=datasets, train_values=overrides,
                     sets=budget_resets(overrides) + list(sets or []), paths=Paths.of(results, data_dir, mirror),
                     jobs=jobs, ray=ray, quiet=quiet,
                     logs=(log,) if log else ())
