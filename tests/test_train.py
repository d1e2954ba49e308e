"""The trainer and the evaluation protocol: exact scoring, complete run directories, resume, locks, divergence."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal

import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file

from tinylm import recorder as runner_mod
from tinylm.config import DataConfig
from tinylm.errors import Interrupted, TinyLMError
from tinylm.models import build_model
from tinylm.paths import Paths
from tinylm.recorder import train_run
from tinylm.run_folders import RunLock, load_run, read_metrics
from tinylm.run_metrics import FIELDS
from tinylm.suite_file import SuiteFile, resolve_run
from tinylm.training import trainer as trainer_mod
from tinylm.training.evaluate import evaluate, protocol_window

TINY_MODELS = {
    "linear": ["model.context_length=4"],
    "mlp": ["model.context_length=4", "model.embed_dim=8", "model.hidden_dim=32", "model.n_hidden=2"],
    "attention": ["model.context_length=16", "model.embed_dim=32", "model.n_heads=2", "model.n_layers=1"],
    "transformer": ["model.context_length=16", "model.embed_dim=32", "model.n_heads=2", "model.n_layers=2"],
}


def tiny_config(model, text_file, steps=30, extra=()):
    data = DataConfig(name="tiny", level="char", path=str(text_file))
    sets = TINY_MODELS[model] + ["train.eval_interval=10", "train.eval_tokens=200", "train.warmup_steps=5",
                                 "train.batch_size=8", "train.seq_len=16", "train.early_stopping_patience=0",
                                 *extra]
    return resolve_run(model, suite=SuiteFile(), data=data, train_values={"max_steps": steps}, sets=sets)


def interrupt_at(monkeypatch, step, sig):
    """Send this process `sig` just before training step `step`; returns the original train_step."""
    original = trainer_mod.Trainer.train_step

    def interrupted(self, lr):
        if self.state.step == step:
            os.kill(os.getpid(), sig)  # the training loop's handler notes it; the loop stops before the next step
        return original(self, lr)

    monkeypatch.setattr(trainer_mod.Trainer, "train_step", interrupted)
    return original


# -- the protocol ------------------------------------------------------------------------------------------------


def naive_total(model, tokens, stride):
    """Sum of log p(token_j | its context), one token at a time, with the context the protocol promises."""
    window, stride = protocol_window(model, stride)
    total = 0.0
    for j in range(1, len(tokens)):
        if model.fixed_window:
            start = max(0, j - model.context_length)
        else:  # the window that scores j starts at m*S, m = ceil((j - W) / S)
            start = 0 if j <= window else -(-(j - window) // stride) * stride
        logits = model(tokens[start:j][None])[0, -1]
        total += F.log_softmax(logits.double(), -1)[tokens[j]].item()
    return total


@pytest.mark.parametrize("name", ["linear", "mlp", "attention", "transformer"])
@pytest.mark.parametrize("n, stride, batch", [(37, 3, 2), (50, None, 4), (16, 8, 1)])
def test_protocol_equals_naive_token_by_token(name, n, stride, batch):
    torch.manual_seed(0)
    cfg = {"linear": {"context_length": 4}, "mlp": {"context_length": 4, "embed_dim": 4, "hidden_dim": 8},
           "attention": {"context_length": 8, "embed_dim": 8, "n_heads": 2, "n_layers": 1},
           "transformer": {"context_length": 8, "embed_dim": 8, "n_heads": 2, "n_layers": 1}}[name]
    model = build_model(name, {**cfg, "vocab_size": 7}).eval()
    if name == "linear":
        torch.nn.init.normal_(model.table.weight)
    tokens = torch.randint(0, 7, (n,))
    if model.fixed_window and stride is not None:
        stride = stride + 1
    result = evaluate(model, tokens, batch_size=batch, stride=stride)
    assert result.tokens == n - 1
    assert result.total_logprob == pytest.approx(naive_total(model, tokens, stride), rel=1e-5, abs=1e-5)


# -- training runs -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["linear", "mlp", "attention", "transformer"])
def test_one_short_run_per_model_leaves_a_complete_run_directory(model, tiny_text_file, tmp_path):
    cfg = tiny_config(model, tiny_text_file, steps=20)
    metrics, run_dir, what = train_run(cfg, Paths.of(tmp_path / "results", tmp_path / "d"), quiet=True)
    assert what == "trained"
    for name in ("config.yaml", "tokenizer.json", "model.safetensors", "last/checkpoint.safetensors",
                 "history.jsonl", "metrics.json", "samples.txt"):
        assert (run_dir / name).is_file(), name
    saved = json.loads((run_dir / "metrics.json").read_text())
    for key in ("model", "dataset", "params", "context_length", "tokens_trained", "train_flops", "train_seconds",
                "best_valid_loss", "test_loss", "test_loglik", "test_perplexity", "test_bits", "device",
                "torch_version", "git_commit", "status"):
        assert key in saved, key
    assert saved["status"] == "complete" and saved["test_loglik"] == pytest.approx(-saved["test_loss"])
    assert list(saved) == list(FIELDS) and read_metrics(run_dir) == metrics  # the file is the RunMetrics returned
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [0, 10, 20]
    assert history[-1]["flops"] == pytest.approx(saved["train_flops"])
    assert saved["train_flops"] > 0
    # a second identical request is skipped, not retrained
    assert train_run(cfg, Paths.of(tmp_path / "results", tmp_path / "d"), quiet=True)[2] == "skipped"
    if model == "linear":  # finished but without weights (as committed results are): trained again
        (run_dir / "model.safetensors").unlink()
        assert train_run(cfg, Paths.of(tmp_path / "results", tmp_path / "d"), quiet=True)[2] == "trained"
    # the saved run loads back and scores the same test log-likelihood
    run = load_run(run_dir)
    assert run.config.to_dict() == cfg.to_dict()


def test_best_valid_weights_are_the_ones_saved_and_tested(tiny_text_file, tmp_path):
    cfg = tiny_config("transformer", tiny_text_file, steps=30)
    metrics, run_dir, _ = train_run(cfg, Paths.of(tmp_path / "results", tmp_path / "d"), quiet=True)
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    best = min(history, key=lambda h: h["valid_loss"])
    assert metrics.best_step == best["step"] and metrics.best_valid_loss == pytest.approx(best["valid_loss"])


def test_resume_after_interruption_reaches_the_same_weights(tiny_text_file, tmp_path, monkeypatch):
    cfg = tiny_config("transformer", tiny_text_file, steps=40, extra=["model.dropout=0.1"])
    straight, straight_dir, _ = train_run(cfg, Paths.of(tmp_path / "a", tmp_path / "d"), quiet=True)

    original = interrupt_at(monkeypatch, 17, signal.SIGINT)
    with pytest.raises(Interrupted) as info:
        train_run(cfg, Paths.of(tmp_path / "b", tmp_path / "d"), quiet=True)
    assert info.value.exit_code == 130
    run_dir = tmp_path / "b" / "runs" / straight_dir.name
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(trainer_mod.Trainer, "train_step", original)
    resumed, _, what = train_run(cfg, Paths.of(tmp_path / "b", tmp_path / "d"), quiet=True)
    assert what == "resumed"
    a, b = load_file(straight_dir / "model.safetensors"), load_file(run_dir / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    last_a = load_file(straight_dir / "last" / "checkpoint.safetensors")
    last_b = load_file(run_dir / "last" / "checkpoint.safetensors")
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a if k.startswith("model."))
    assert resumed.steps == 40 and resumed.best_step is not None
    # every number the same but the clock's
    assert resumed == dataclasses.replace(straight, train_seconds=resumed.train_seconds, updated=resumed.updated,
                                          tokens_per_second=resumed.tokens_per_second)
    hist_a = [json.loads(x)["valid_loss"] for x in (straight_dir / "history.jsonl").read_text().splitlines()]
    hist_b = [json.loads(x)["valid_loss"] for x in (run_dir / "history.jsonl").read_text().splitlines()]
    assert hist_a == hist_b


def test_a_second_training_on_the_same_run_directory_is_refused_before_it_starts(tiny_text_file, tmp_path,
                                                                                   monkeypatch):
    cfg = tiny_config("linear", tiny_text_file, steps=5)
    from tinylm.run_folders import run_id

    run_dir = tmp_path / "results" / "runs" / run_id(cfg)
    loaded = []
    original = runner_mod.load_corpus
    monkeypatch.setattr(runner_mod, "load_corpus", lambda *a, **k: loaded.append(1) or original(*a, **k))
    with RunLock(run_dir):
        with pytest.raises(TinyLMError, match="in use by another training process"):
            train_run(cfg, Paths.of(tmp_path / "results", tmp_path / "d"), quiet=True)
    assert not loaded, "the data was loaded before the lock refused the run"
    # released: now it trains
    monkeypatch.undo()
    assert train_run(cfg, Paths.of(tmp_path / "results", tmp_path / "d"), quiet=True)[2] == "trained"


def test_a_run_refused_before_its_first_file_leaves_no_folder(tiny_text_file, tmp_path):
    cfg = tiny_config("linear", tiny_text_file, steps=5, extra=["train.seq_len=1000000"])
    with pytest.raises(TinyLMError, match="do not fit the training split"):
        train_run(cfg, Paths.of(tmp_path / "results", tmp_path / "d"), quiet=True)
    assert not (tmp_path / "results").exists()


def test_divergence_stops_with_a_clear_message(tiny_text_file, tmp_path):
    cfg = tiny_config("mlp", tiny_text_file, steps=200, extra=["train.learning_rate=1000", "train.gradient_clip=0",
                                                              "train.warmup_steps=0"])
    with pytest.raises(TinyLMError, match=r"diverged at step \d+ .*lower train.learning_rate"):
        train_run(cfg, Paths.of(tmp_path / "results", tmp_path / "d"), quiet=True)
    run_dir = next((tmp_path / "results" / "runs").iterdir())
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "diverged"
    assert (run_dir / "model.safetensors").is_file()


def test_context_longer_than_validation_split_is_refused(tmp_path):
    f = tmp_path / "small.txt"
    f.write_text("abcdefgh" * 40)  # valid split: 32 characters
    cfg = resolve_run("transformer", suite=SuiteFile(), data=DataConfig(name="s", level="char", path=str(f)),
                      train_values={"max_steps": 1}, sets=["model.context_length=64"])
    with pytest.raises(TinyLMError, match="longer than the validation split"):
        train_run(cfg, Paths.of(tmp_path / "results", tmp_path / "d"), quiet=True)
    assert not (tmp_path / "results" / "runs").exists()


def test_a_context_longer_than_the_training_sequences_is_refused(tiny_text_file, tmp_path):
    cfg = tiny_config("attention", tiny_text_file, extra=["model.context_length=32"])  # train.seq_len=16
    with pytest.raises(TinyLMError, match=r"never train its positions 16-31"):
        train_run(cfg, Paths.of(tmp_path / "results", tmp_path / "d"), quiet=True)
    assert not (tmp_path / "results" / "runs").exists()


def test_changed_config_under_the_same_run_name_is_refused(tiny_text_file, tmp_path):
    paths = Paths.of(tmp_path / "r", tmp_path / "d")
    train_run(tiny_config("linear", tiny_text_file, steps=5), paths, run_name="x", quiet=True)
    with pytest.raises(TinyLMError, match=r"different config \(train.max_steps: 5 -> 6"):
        train_run(tiny_config("linear", tiny_text_file, steps=6), paths, run_name="x", quiet=True)


def test_early_stop_survives_a_kill_during_the_final_evaluation(tiny_text_file, tmp_path, monkeypatch):
    """Regression (review): the early-stop decision was not saved, so a resumed run trained past it."""
    cfg = tiny_config("mlp", tiny_text_file, steps=40)
    original_validate, original_finish = trainer_mod.Trainer.validate, runner_mod.RunFiles.finish

    def stop_at_ten(self):
        out = original_validate(self)
        self.state.stopped_early = self.state.stopped_early or self.state.step == 10
        return out

    monkeypatch.setattr(trainer_mod.Trainer, "validate", stop_at_ten)
    monkeypatch.setattr(runner_mod.RunFiles, "finish", lambda self, status: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, Paths.of(tmp_path / "r", tmp_path / "d"), quiet=True)
    monkeypatch.setattr(runner_mod.RunFiles, "finish", original_finish)
    metrics, _, what = train_run(cfg, Paths.of(tmp_path / "r", tmp_path / "d"), quiet=True)
    assert what == "resumed" and metrics.steps == 10 and metrics.status == "stopped_early"


def test_resume_by_a_relative_path_from_inside_the_runs_folder(tiny_text_file, tmp_path, monkeypatch):
    """Regression (review): --resume rebuilt the path as <parent>/runs/<name>."""
    from tinylm.cli import main

    cfg = tiny_config("linear", tiny_text_file, steps=20)
    original = interrupt_at(monkeypatch, 7, signal.SIGTERM)
    with pytest.raises(Interrupted):
        train_run(cfg, Paths.of(tmp_path / "results", tmp_path / "d"), run_name="rel", quiet=True)
    monkeypatch.setattr(trainer_mod.Trainer, "train_step", original)
    monkeypatch.chdir(tmp_path / "results" / "runs")
    assert main(["train", "--resume", "rel", "--quiet", "--device", "cpu", "--data-dir", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "results" / "runs" / "rel" / "metrics.json").read_text())["status"] == "complete"


# -- snapshots (time-to-target benchmark) -------------------------------------------------------------------------


def test_snapshots_are_saved_during_training_and_scored_after_the_fact(tmp_path, tiny_text_file, monkeypatch):
    from tinylm.speed import score_snapshots, time_to

    clock = iter(range(10**6))  # each perf_counter() call advances one "second": one step = one second of training
    monkeypatch.setattr(runner_mod.time, "perf_counter", lambda: float(next(clock)))
    cfg = tiny_config("transformer", tiny_text_file, steps=12)
    _, run_dir, _ = train_run(cfg, Paths.of(tmp_path), run_name="snap", quiet=True, snapshot_every=3.0)
    names = sorted(p.name for p in (run_dir / "snapshots").glob("*.safetensors"))
    assert names == [f"step{s:08d}.safetensors" for s in (3, 6, 9, 12)]
    rows = score_snapshots(run_dir, "test")
    assert [r["step"] for r in rows] == [3, 6, 9, 12]
    assert [r["seconds"] for r in rows] == [3.0, 6.0, 9.0, 12.0]
    # Each snapshot holds the weights of its step: scoring the last one equals scoring the final weights.
    run = load_run(run_dir)
    run.model.load_weights(load_file(run_dir / "snapshots" / "step00000012.safetensors"))
    from tinylm.data.corpus import load_corpus
    corpus = load_corpus(cfg.data, use_cache=False)
    assert rows[-1]["test_loglik"] == pytest.approx(evaluate(run.model, corpus.tensor("test")).loglik, abs=1e-6)
    assert json.loads((run_dir / "snapshots.json").read_text())["snapshots"] == rows
    best = max(r["test_loglik"] for r in rows)
    first = time_to(rows, best)
    assert first is not None and first["test_loglik"] == best
    assert time_to(rows, best + 1.0) is None
    # A fresh start of the same run clears the old snapshots.
    train_run(cfg, Paths.of(tmp_path), run_name="snap", quiet=True, force=True)
    assert not list((run_dir / "snapshots").glob("*.safetensors"))


def test_scoring_a_run_without_snapshots_says_how_to_get_them(tmp_path, tiny_text_file):
    from tinylm.speed import score_snapshots

    cfg = tiny_config("linear", tiny_text_file, steps=3)
    _, run_dir, _ = train_run(cfg, Paths.of(tmp_path), run_name="plain", quiet=True)
    with pytest.raises(TinyLMError, match="--snapshot-every"):
        score_snapshots(run_dir)


def script_valid_losses(monkeypatch, cfg, losses: list[float]) -> None:
    """Make the periodic evaluations on the valid subset return these losses, in order (the rest stay real)."""
    scripted_losses = iter(losses)
    original = trainer_mod.Trainer.evaluate

    def scripted(self, tokens):
        real = original(self, tokens)
        if len(tokens) <= cfg.train.eval_tokens + 1:
            loss = next(scripted_losses)
            return trainer_mod.EvalResult(-loss * real.tokens, real.tokens, real.stride, real.window)
        return real

    monkeypatch.setattr(trainer_mod.Trainer, "evaluate", scripted)


def test_the_plateau_schedule_decays_at_each_plateau_and_ends_the_run_by_early_stopping(tiny_text_file, tmp_path,
                                                                                        monkeypatch):
    """Validation losses scripted per evaluation (at step 0, then every 10 steps): improve, plateau 2 evals (decay),
    improve once, then never again: decays at 2 and 4 bad evals, stop at 5, long before the 200-step budget."""
    cfg = tiny_config("mlp", tiny_text_file, steps=200, extra=[
        "train.scheduler=plateau", "train.plateau_patience=2", "train.plateau_factor=0.5",
        "train.early_stopping_patience=5", "train.learning_rate=0.004", "train.warmup_steps=0"])
    script_valid_losses(monkeypatch, cfg, [3.1, 3.0, 2.9, 2.95, 2.95, 2.8] + [2.85] * 10)
    metrics, run_dir, _ = train_run(cfg, Paths.of(tmp_path / "r", tmp_path / "d"), quiet=True)
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    lr = {r["step"]: r["lr"] for r in rows if r.get("valid_loss") is not None}
    assert metrics.status == "stopped_early" and metrics.steps == 100
    # the lr logged at an evaluation is the one the steps before it used
    assert [lr[s] for s in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)] == pytest.approx(
        [0.004, 0.004, 0.004, 0.004, 0.002, 0.002, 0.002, 0.001, 0.001, 0.0005])
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]
    assert saved["plateau_factor"] == 0.5 and "plateau_patience" not in saved  # 2 is the default


def test_an_improvement_smaller_than_min_improvement_counts_as_none(tiny_text_file, tmp_path, monkeypatch):
    """Scripted valid losses creeping down by 1e-4 an evaluation: with min_improvement 1e-3 they are plateaus (the
    rate decays at each, the run stops after 3 and keeps the weights of the last real improvement); with the
    default 0, every one of them is a new best and the run goes on to its budget."""
    losses = [3.0, 2.5] + [2.5 - 1e-4 * (i + 1) for i in range(20)]

    def run(name: str, extra: list[str]) -> tuple[dict, list[dict]]:
        cfg = tiny_config("mlp", tiny_text_file, steps=100, extra=[
            "train.scheduler=plateau", "train.plateau_patience=1", "train.early_stopping_patience=3",
            "train.warmup_steps=0", "train.learning_rate=0.004", *extra])
        with monkeypatch.context() as patch:
            script_valid_losses(patch, cfg, losses)
            metrics, run_dir, _ = train_run(cfg, Paths.of(tmp_path / name, tmp_path / "d"), quiet=True)
        rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
        return metrics, [r for r in rows if r.get("valid_loss") is not None]

    metrics, evals = run("strict", ["train.min_improvement=0.001"])
    assert metrics.status == "stopped_early" and metrics.steps == 40 and metrics.best_step == 10
    assert [r["lr"] for r in evals[1:]] == pytest.approx([0.004, 0.004, 0.001, 0.00025])
    metrics, evals = run("any", [])
    assert metrics.status != "stopped_early" and metrics.steps == 100 and metrics.best_step == 100
    assert {r["lr"] for r in evals[1:]} == {0.004}


def test_plateau_max_decays_ends_the_run_where_the_rate_would_be_decayed_once_more(tiny_text_file, tmp_path,
                                                                                    monkeypatch):
    """Scripted valid losses (step 0, then every 10 steps): two improvements, then plateaus. With patience 1 the
    rate decays at the first two plateaus; the third would be a third decay, so the run ends there, although early
    stopping (patience 10) would have waited seven evaluations more; the best weights are those of step 20."""
    cfg = tiny_config("mlp", tiny_text_file, steps=200, extra=[
        "train.scheduler=plateau", "train.plateau_patience=1", "train.plateau_max_decays=2",
        "train.early_stopping_patience=10", "train.learning_rate=0.004", "train.warmup_steps=0"])
    script_valid_losses(monkeypatch, cfg, [3.1, 3.0, 2.9] + [2.95] * 20)
    metrics, run_dir, _ = train_run(cfg, Paths.of(tmp_path / "r", tmp_path / "d"), quiet=True)
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r.get("valid_loss") is not None]
    assert metrics.status == "stopped_early" and metrics.steps == 50 and metrics.best_step == 20
    assert [r["lr"] for r in evals[1:]] == pytest.approx([0.004, 0.004, 0.004, 0.001, 0.00025])
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["plateau_max_decays"] == 2


def test_training_fields_added_later_stay_out_of_config_yaml_at_their_defaults(tiny_text_file):
    train = tiny_config("mlp", tiny_text_file).to_dict()["train"]
    assert "plateau_patience" not in train and "plateau_factor" not in train
    assert "min_improvement" not in train and "plateau_max_decays" not in train


def test_the_speed_forecast_never_measures_more_steps_than_the_run_has_left(tiny_text_file, tmp_path, monkeypatch):
    from tinylm.data.corpus import load_corpus

    cfg = tiny_config("transformer", tiny_text_file, steps=3)
    trainer = trainer_mod.Trainer(cfg, load_corpus(cfg.data, tmp_path / "d", quiet=True))
    calls = []
    real = trainer_mod.Trainer._step
    monkeypatch.setattr(trainer_mod.Trainer, "_step", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    trainer.measure_speed(seconds=60)  # 60 s of steps for a 3-step run was the old behaviour
    assert len(calls) == 1 + 3  # a warm-up, then the 3 steps the run will train
    trainer.state.step = 2
    calls.clear()
    trainer.measure_speed(seconds=60)
    assert len(calls) == 1 + 2  # at least 2 steps, for a rate


@pytest.mark.parametrize("from_warmup", [False, True])
def test_the_decay_starts_from_the_peak_after_warmup_when_asked(tiny_text_file, tmp_path, from_warmup):
    from tinylm.data.corpus import load_corpus

    cfg = tiny_config("linear", tiny_text_file, steps=25, extra=[f"train.decay_from_warmup={str(from_warmup).lower()}"])
    trainer = trainer_mod.Trainer(cfg, load_corpus(cfg.data, tmp_path / "d", quiet=True))
    peak, floor = cfg.train.learning_rate, cfg.train.learning_rate * cfg.train.min_lr_ratio
    rates = {}
    for step in (5, 15, 25):  # the end of warm-up, half-way through the rest, the end
        trainer.state.step = step
        rates[step] = trainer.learning_rate()
    assert rates[25] == pytest.approx(floor)
    if from_warmup:  # nanoGPT's shape: the cosine runs over steps 5..25, from the peak
        assert rates[5] == pytest.approx(peak) and rates[15] == pytest.approx((peak + floor) / 2)
    else:  # over the whole budget: at step 5, a fifth of the way down already
        assert rates[5] < peak
        assert rates[5] == pytest.approx(floor + (peak - floor) * 0.5 * (1 + math.cos(0.2 * math.pi)))
    assert ("decay_from_warmup" in cfg.to_dict()["train"]) == from_warmup  # saved only when set: ids unchanged


def test_the_speed_forecast_takes_the_median_step_so_a_compiling_step_does_not_count():
    from types import SimpleNamespace

    from tinylm.training.loop import _Forecast

    asked, announced = [], []
    trainer = SimpleNamespace(state=SimpleNamespace(step=0, seconds=0.0, stopped_early=False), done=lambda: False,
                              eval_speed=lambda: 1e-4,
                              forecast=lambda speeds, start: asked.append(speeds) or {"speeds": speeds})
    forecast = _Forecast(trainer, announced.append)
    for took in (90.0, 60.0, 1.0, 1.1, 0.9):  # the first call compiles, the second recompiles
        forecast.step_took(took)
    assert announced == []  # 60 s of steps, but only 4 after the first
    forecast.step_took(1.0)
    assert asked == [(pytest.approx(1.0), 1e-4)] and len(announced) == 1
