"""The training engine, one for every model: the step, the schedule, validation and early stopping, and a
state_dict of everything resume needs. It knows nothing of run directories (`tinylm.recorder` owns those).

One iteration of the loop that drives it (nanoGPT's order): evaluate on schedule -> set lr -> forward / backward
-> clip -> step. `validate()` tracks the best valid loss; the caller keeps the best weights.

Data parallel (torchrun, see `tinylm.distributed`): every rank draws the same global batch of random windows (the
same generator state everywhere: B integers, nothing to speak of) and trains on its own slice of it under
DistributedDataParallel, which averages the gradients. So the global batch, the loss and the resume state are
those of a single process whatever the world size; a run resumes across a change of world size. Losses, step
times and stop requests are averaged over the ranks every step, so every rank takes the same decisions.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from tinylm import distributed
from tinylm.config import RunConfig, TrainConfig
from tinylm.data.corpus import Corpus, sample_batch, stream_batch
from tinylm.device import (
    bf16_native,
    configure,
    device_name,
    exact_fp32,
    pick_device,
    pick_dtype,
    synchronize,
)
from tinylm.errors import TinyLMError, TinyLMWarning, UsageError
from tinylm.models.base import LanguageModel
from tinylm.models.registry import build_model
from tinylm.run_metrics import RunMetrics, Status
from tinylm.training.checkpoint import optimizer_from_tensors, optimizer_to_tensors
from tinylm.training.evaluate import EvalResult, evaluate, random_window_loss
from tinylm.training.optim import make_optimizer
from tinylm.training.schedule import learning_rate


@dataclass
class TrainState:
    """Counters that resume needs besides weights, optimizer and RNG."""

    step: int = 0
    tokens: int = 0
    flops: float = 0.0
    seconds: float = 0.0
    best_valid: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    stopped_early: bool = False
    lr_decays: int = 0
    """Plateaus of the validation curve so far (the `plateau` schedule's decays)."""

    def record_valid(self, loss: float, t: TrainConfig) -> bool:
        """Count a validation loss at the current step: keep it if it is the best by more than t.min_improvement,
        else decay the plateau schedule or stop (plateau_max_decays, early stopping); returns whether it improved."""
        improved = self.best_valid is None or loss < self.best_valid - t.min_improvement
        if improved:
            self.best_valid, self.best_step, self.bad_evals = loss, self.step, 0
        else:
            self.bad_evals += 1
            if t.scheduler == "plateau" and self.bad_evals % t.plateau_patience == 0:
                if t.plateau_max_decays and self.lr_decays >= t.plateau_max_decays:
                    self.stopped_early = True
                else:
                    self.lr_decays += 1
        if t.early_stopping_patience and self.bad_evals >= t.early_stopping_patience:
            self.stopped_early = True
        return improved


class Diverged(TinyLMError):
    """The training loss became non-finite or exploded."""


@dataclass
class Plan:
    """Sizes derived from the config and model: what one step costs and how many steps the budget allows."""

    seq_len: int
    fed_len: int
    tokens_per_step: int
    flops_per_step: float
    total_steps: int | None

    @classmethod
    def make(cls, cfg: RunConfig, model: LanguageModel, n_train: int) -> Plan:
        t = cfg.train
        seq_len = t.seq_len or model.default_seq_len()
        if not model.fixed_window and seq_len > model.context_length:
            seq_len = model.context_length
        if model.learned_positions and seq_len < model.context_length:
            raise TinyLMError(  # those past seq_len would stay at their initial values
                f"train.seq_len ({seq_len}) is shorter than model.context_length ({model.context_length}): the "
                f"{cfg.model_name} model would never train its positions {seq_len}-{model.context_length - 1}, which "
                "evaluation and generation use; set train.seq_len to the context length or lower model.context_length"
            )
        fed = seq_len + model.train_skip
        if fed + 1 >= n_train:
            raise TinyLMError(
                f"training sequences of {fed} tokens do not fit the training split ({n_train} tokens); "
                "lower train.seq_len or model.context_length, or use more data"
            )
        if t.carry_state and fed > (n_train - 1) // t.batch_size:
            raise TinyLMError(
                f"train.carry_state cuts the training split ({n_train} tokens) into {t.batch_size} streams, shorter "
                f"than one sequence of {fed} tokens; lower train.batch_size or train.seq_len, or use more data"
            )
        tokens_per_step = t.batch_size * seq_len
        # what the model computes: given the targets, a window model computes only the scored positions (the k - 1
        # context positions before them are embedding lookups, which cost nothing); otherwise every fed position
        computed = seq_len if model.takes_targets else fed
        flops_per_step = model.flops_per_token(training=True, seq_len=fed) * t.batch_size * computed
        limits = []
        if t.epochs is not None:
            limits.append(math.ceil(t.epochs * n_train / tokens_per_step))
        if t.max_steps is not None:
            limits.append(t.max_steps)
        if t.max_tokens is not None:
            limits.append(math.ceil(t.max_tokens / tokens_per_step))
        if t.max_flops is not None and not model.flops_known:
            raise UsageError(f"model '{cfg.model_name}' does not count its FLOPs (it has no "
                             "matmul_flops_per_token), so a FLOP budget cannot end its training: give "
                             "--max-tokens, --max-steps, --epochs or --max-time")
        if t.max_flops is not None:
            limits.append(math.ceil(t.max_flops / flops_per_step))
        return cls(seq_len, fed, tokens_per_step, flops_per_step, max(1, min(limits)) if limits else None)


def rng_snapshot(device: torch.device) -> Callable[[], None]:
    """torch's random state now (the CPU's and, on CUDA, `device`'s), as a function that puts it back."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def restore() -> None:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)
    return restore


class CompiledForward:
    """torch.compile's forward of `body`, or `body` itself where compiling fails on the first call (a CPU without a
    working C++ compiler, say): compiling changes the speed, not the run (it is not part of the run's identity), so
    the run goes on eagerly and says so once, from the random state the failed call began with."""

    def __init__(self, body: torch.nn.Module, device: torch.device = torch.device("cpu")) -> None:
        self.body, self.compiled, self.device = body, torch.compile(body), device
        self.call: Callable[..., Any] = self._first_call
        """The first call tries the compiled forward; then it is the compiled one, or `body` if that failed."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.call(*args, **kwargs)

    def _first_call(self, *args: Any, **kwargs: Any) -> Any:
        restore = rng_snapshot(self.device)
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 -- only the compiler's own failures fall back; the rest is raised
            if not type(e).__module__.startswith(("torch._dynamo", "torch._inductor")):
                raise
            warnings.warn(f"torch.compile failed here ({str(e).strip().splitlines()[0][:200]}); training without "
                          "it: the same run, slower", TinyLMWarning, stacklevel=3)
            restore()
            self.call = self.body
            return self.body(*args, **kwargs)
        self.call = self.compiled
        return out


class Trainer:
    """Trains one model on one corpus by its config's training section."""

    def __init__(self, cfg: RunConfig, corpus: Corpus):
        if not cfg.train.has_budget():
            raise UsageError("no training budget: set --epochs, --max-steps, --max-tokens, --max-flops or --max-time")
        self.cfg, self.corpus = cfg, corpus
        self.world = w = distributed.world()
        distributed.check_batch(cfg.train.batch_size, w.size)
        self.rows = (w.rank * cfg.train.batch_size // w.size, (w.rank + 1) * cfg.train.batch_size // w.size)
        self.device = distributed.setup(pick_device(cfg.train.device))
        configure(self.device, w.local_size)
        self.dtype = pick_dtype(cfg.train.precision, self.device)
        torch.manual_seed(cfg.train.seed)
        counts = corpus.train_counts() if cfg.model.head == "adaptive" else None  # (kept in the run's tokenizer)
        self.model = build_model(cfg.model_name, cfg.model_config(corpus.tokenizer.vocab_size, counts)).to(self.device)
        if cfg.train.carry_state and not self.model.recurrent:
            raise UsageError(f"train.carry_state needs a recurrent model (lstm): {cfg.model_name} reads a window "
                             "and has no state to carry")
        self.carried: Any = None
        """A recurrent model's state carried from one training step to the next (train.carry_state)."""
        self._seed_rank(0)
        body = self.model
        if w.size > 1:  # broadcasts rank 0's weights, then averages gradients in backward
            body = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                           else None)
        self.forward = CompiledForward(body, self.device) if cfg.train.compile else body
        # numpy arrays (memory-mapped from the cache): batches and evaluation windows gather what they need
        self.train_tokens, self.valid_tokens, self.test_tokens = (corpus.splits[s] for s in ("train", "valid", "test"))
        if self.model.context_length >= len(self.valid_tokens):
            raise TinyLMError(
                f"model.context_length={self.model.context_length} is longer than the validation split "
                f"({len(self.valid_tokens)} tokens); lower model.context_length or use more data"
            )
        self.plan = Plan.make(cfg, self.model, len(self.train_tokens))
        self.optimizer = make_optimizer(self.model, cfg.train, self.device)
        self.batch_rng = torch.Generator().manual_seed(cfg.train.seed + 1)
        self.state = TrainState()

    # -- schedule and budget -------------------------------------------------------------------------------------
    def progress(self) -> float:
        """Fraction of the budget used (steps or seconds, whichever is further); with train.decay_from_warmup, the
        steps count from the end of warm-up."""
        t, s = self.cfg.train, self.state
        total, start = self.plan.total_steps, t.warmup_steps if t.decay_from_warmup else 0
        p = (s.step - start) / (total - start) if total and total > start else 0.0
        if t.max_time:
            p = max(p, s.seconds / t.max_time)
        return p

    def done(self) -> bool:
        """True once the budget is spent."""
        t, s = self.cfg.train, self.state
        return (self.plan.total_steps is not None and s.step >= self.plan.total_steps) or (
            t.max_time is not None and s.seconds >= t.max_time
        )

    def learning_rate(self) -> float:
        """The learning rate of the next step."""
        t = self.cfg.train
        return learning_rate(self.state.step, self.progress(), t.learning_rate, t.warmup_steps, t.min_lr_ratio,
                             t.scheduler, self.state.lr_decays, t.plateau_factor)

    # -- steps ---------------------------------------------------------------------------------------------------
    def autocast(self) -> torch.autocast:
        """The autocast context of training (a no-op in fp32)."""
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def train_step(self, lr: float) -> float:
        """One optimizer step at learning rate `lr` on a fresh random batch (with train.carry_state: on the next window
        of every stream); returns the loss (no counters)."""
        return self._step(self.model, self.forward, self.optimizer, self.batch_rng, lr, self.cfg.train.carry_state)

    def _step(self, model: LanguageModel, forward: Any, optimizer: torch.optim.Optimizer, rng: torch.Generator,
              lr: float, carry: bool = False) -> float:
        t = self.cfg.train
        for group in optimizer.param_groups:
            group["lr"] = lr
        kwargs = {}
        if carry:  # the next window of every stream, from the state the last step left
            x, y, fresh = stream_batch(self.train_tokens, t.batch_size, self.plan.fed_len, self.state.step, self.rows)
            if fresh or self.carried is None:
                self.carried = model.new_cache()
            kwargs["cache"] = self.carried
        else:
            x, y = sample_batch(self.train_tokens, t.batch_size, self.plan.fed_len, rng, self.rows)  # (B/world, L)
        if self.device.type == "cuda":  # pinned host memory: the copy overlaps with the GPU's work
            x, y = x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        else:
            x, y = x.to(self.device), y.to(self.device)
        skip = model.train_skip
        if model.takes_targets:  # only the scored positions, and an adaptive head's loss without its full softmax
            with self.autocast():
                loss = forward(x, targets=y[:, skip:], **kwargs).mean()
        else:
            with self.autocast():
                logits = forward(x, **kwargs)  # (B, L, V)
            loss = F.cross_entropy(logits[:, skip:].float().reshape(-1, logits.size(-1)), y[:, skip:].reshape(-1))
        loss.backward()
        if carry:
            self.carried.detach()
        if t.gradient_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.gradient_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    def measure_speed(self, seconds: float = 2.0) -> tuple[float, float]:
        """(seconds per training step, seconds per evaluated token) measured for about `seconds`, but never for more
        steps than the run has left, on throwaway copies of the model and optimizer: the run itself (weights,
        optimizer, every random state) is left untouched."""
        restore = rng_snapshot(self.device)
        model = copy.deepcopy(self.model)
        optimizer = make_optimizer(model, self.cfg.train, self.device)
        generator = torch.Generator().manual_seed(0)
        self._step(model, model, optimizer, generator, 0.0)  # warm-up: first-call allocations
        left = self.plan.total_steps - self.state.step if self.plan.total_steps is not None else math.inf
        steps, start = 0, time.perf_counter()
        while steps < 2 or (steps < left and time.perf_counter() - start < 0.75 * seconds):
            self._step(model, model, optimizer, generator, 0.0)
            steps += 1
        synchronize(self.device)
        step_seconds = (time.perf_counter() - start) / steps
        eval_seconds = self.eval_speed(model)
        restore()
        return step_seconds, eval_seconds

    def forecast(self, speeds: tuple[float, float] | None = None, start: tuple[int, float] | None = None,
                 seconds: float = 2.0) -> dict[str, Any]:
        """What the rest of the run will train and how long it should take here: from `speeds` (seconds per step,
        per evaluated token) that the run measured on its own first steps, else from a `seconds` measurement on
        throwaway copies. `start`: the (step, seconds of training) the forecast counts from (default: now)."""
        step_s, eval_s = speeds if speeds is not None else self.measure_speed(seconds)
        s, p = self.state, self.plan
        from_step, from_seconds = start if start is not None else (s.step, s.seconds)
        train_s, eval_total = self.expected_seconds(step_s, eval_s, from_step, from_seconds)
        steps = p.total_steps - from_step if p.total_steps is not None else None
        return {"model": self.cfg.model_name, "dataset": self.cfg.data.label, "params": self.model.num_params(),
                "steps": steps, "from_step": from_step,
                "tokens": steps * p.tokens_per_step if steps is not None else None,
                "batch_size": self.cfg.train.batch_size, "seq_len": p.seq_len, "max_time": self.cfg.train.max_time,
                "tokens_per_second": p.tokens_per_step / step_s, "train_seconds": train_s,
                "eval_seconds": eval_total, "bf16": self.dtype == torch.bfloat16,
                "bf16_native": bf16_native(self.device),
                "measured": f"{seconds:g} s" if speeds is None else "the first steps"}

    def eval_speed(self, model: LanguageModel | None = None) -> float:
        """Seconds per evaluated token, timed on 64 windows of `model` (default: the one being trained; evaluation
        draws no random numbers and leaves the weights and the training mode as they were)."""
        model = model or self.model
        window = self.valid_tokens[: min(len(self.valid_tokens), 64 * model.context_length + 1)]
        start = time.perf_counter()
        result = evaluate(model, window, batch_size=64, device=self.device)
        synchronize(self.device)
        return (time.perf_counter() - start) / max(result.tokens, 1)

    def expected_seconds(self, step_seconds: float, eval_seconds: float, step: int,
                         seconds: float) -> tuple[float, float]:
        """(training, evaluation) seconds the rest of the budget, from `step` and `seconds` of training, should take
        at the measured speeds."""
        t = self.cfg.train
        steps = (self.plan.total_steps - step) if self.plan.total_steps is not None else math.inf
        train = min(steps * step_seconds, t.max_time - seconds if t.max_time is not None else math.inf)
        evals = train / step_seconds / t.eval_interval + 1
        tokens = evals * min(t.eval_tokens, len(self.valid_tokens)) + len(self.valid_tokens) + len(self.test_tokens)
        return train, tokens * eval_seconds

    def account(self, loss: float, seconds: float, stop: bool = False) -> bool:
        """Count a finished step; raises Diverged if its loss is not finite or exploded. With several processes
        the loss and seconds are averaged over them; returns True if any of them asked to `stop`."""
        s = self.state
        if self.world.size > 1:
            mean = distributed.all_sum(torch.tensor([loss, seconds, float(stop)], dtype=torch.float64))
            loss, seconds, stop = float(mean[0]) / self.world.size, float(mean[1]) / self.world.size, bool(mean[2])
        s.seconds += seconds
        s.step += 1
        s.tokens += self.plan.tokens_per_step
        if self.model.flops_known:
            s.flops += self.plan.flops_per_step
        if not math.isfinite(loss) or loss > max(20.0, 4 * math.log(self.corpus.tokenizer.vocab_size)):
            raise Diverged(
                f"training diverged at step {s.step} (loss {loss:.3g}); the learning rate "
                f"({self.cfg.train.learning_rate:g}) is likely too high: lower train.learning_rate"
            )
        s.loss_sum += loss
        s.loss_count += 1
        return stop

    def evaluate(self, tokens: torch.Tensor | np.ndarray) -> EvalResult:
        """Score `tokens` by the common protocol, always in fp32 (whatever the training precision), so scores
        compare across machines (no TF32 either). With several processes each scores its share of the windows
        and the sums are added up: every token is still scored exactly once."""
        with exact_fp32(self.device):
            part = evaluate(self.model, tokens, batch_size=64, device=self.device,
                            shard=(self.world.rank, self.world.size))
        if self.world.size == 1:
            return part
        total = distributed.all_sum(torch.tensor([part.total_logprob, part.tokens], dtype=torch.float64))
        return EvalResult(float(total[0]), int(total[1]), part.stride, part.window)

    def window_loss(self, tokens: torch.Tensor | np.ndarray) -> float:
        """nanoGPT's estimate of the loss of `tokens` (evaluate.random_window_loss), in fp32, on rank 0's draws."""
        with exact_fp32(self.device):
            return random_window_loss(self.model, tokens, device=self.device, seed=self.cfg.train.seed)

    def validate(self) -> tuple[dict[str, Any], bool]:
        """Score the valid subset; returns its history row and whether it is the best so far (updates patience)."""
        s, t = self.state, self.cfg.train
        result = self.evaluate(self.valid_tokens[: t.eval_tokens + 1])
        flops = s.flops if self.model.flops_known else None
        row = {"step": s.step, "tokens": s.tokens, "flops": flops, "seconds": round(s.seconds, 3),
               "lr": self.learning_rate(), "train_loss": s.loss_sum / s.loss_count if s.loss_count else None,
               "valid_loss": result.loss}
        s.loss_sum, s.loss_count = 0.0, 0
        return row, s.record_valid(result.loss, t)

    # -- resume --------------------------------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything resume needs as (tensors, JSON-ready metadata): weights, optimizer, counters, RNG states."""
        opt_tensors, opt_meta = optimizer_to_tensors(self.optimizer)
        tensors = {f"model.{k}": v for k, v in self.model.weights().items()}
        tensors.update(opt_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.batch"] = self.batch_rng.get_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        if self.carried is not None:
            tensors.update({f"carried.{k}": v for k, v in self.carried.tensors().items()})
        return tensors, {"state": dataclasses.asdict(self.state), "optimizer": opt_meta}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Inverse of `state_dict`; raises KeyError/RuntimeError/TypeError/ValueError if it does not fit."""
        self.model.load_weights({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
        optimizer_from_tensors(self.optimizer, tensors, meta["optimizer"])
        self.state = TrainState(**meta["state"])
        torch.set_rng_state(tensors["rng.torch"])
        self.batch_rng.set_state(tensors["rng.batch"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        carried = {k[len("carried."):]: v.to(self.device) for k, v in tensors.items() if k.startswith("carried.")}
        if carried and self.world.size == 1 and carried["0"].size(1) == self.cfg.train.batch_size:
            # (rank 0 of a data-parallel run saves only its own streams' state: a resume from it starts at zero)
            self.carried = self.model.new_cache()
            self.carried.load(carried)
        self._seed_rank(self.state.step)

    def _seed_rank(self, step: int) -> None:
        """Ranks other than 0 draw their own dropout masks (rank 0's stream is the single-process one)."""
        if self.world.rank:
            torch.manual_seed(self.cfg.train.seed + 1_000_003 * self.world.rank + step)

    # -- facts for the run's metrics -----------------------------------------------------------------------------
    def summary(self, status: Status) -> RunMetrics:
        """What was trained, how far and on what, with `status`; the recorder adds where it ran and the final scores."""
        s, m = self.state, self.model
        return RunMetrics(
            model=self.cfg.model_name,
            dataset=self.cfg.data.label,
            level=self.corpus.tokenizer.level,
            vocab_size=self.corpus.tokenizer.vocab_size,
            params=m.num_params(),
            context_length=m.context_length,
            flops_per_token=m.flops_per_token(training=False, seq_len=self.plan.fed_len) if m.flops_known else None,
            steps=s.step,
            tokens_trained=s.tokens,
            train_flops=s.flops if m.flops_known else None,
            train_seconds=s.seconds,
            tokens_per_second=s.tokens / s.seconds if s.seconds else None,
            best_valid_loss=s.best_valid,
            best_step=s.best_step,
            precision="bf16" if self.dtype == torch.bfloat16 else "fp32",
            eval_precision="fp32",
            seed=self.cfg.train.seed,
            device=device_name(self.device),
            world_size=self.world.size,
            status=status,
        )
