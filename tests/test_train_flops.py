"""Training FLOPs count what a step computes: a window model given its targets computes only the scored
positions (the k - 1 context positions before them are embedding lookups, free), so train_flops is tokens_trained x
the training FLOPs per token, and the FLOP counter over a real training step agrees."""

from __future__ import annotations

import pytest
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tinylm.config import DataConfig
from tinylm.data.corpus import load_corpus
from tinylm.suite_file import SuiteFile, resolve_run
from tinylm.training.trainer import Trainer

SETS = {
    "mlp": ["model.context_length=8", "model.embed_dim=8", "model.hidden_dim=32", "model.n_hidden=2"],
    "linear": ["model.context_length=8", "model.rank=16"],
    "transformer": ["model.context_length=16", "model.embed_dim=32", "model.n_heads=2", "model.n_layers=1"],
}


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")
@pytest.mark.parametrize("name", list(SETS))
@pytest.mark.parametrize("head", ["full", "adaptive"])
def test_a_training_step_costs_what_is_counted(name, head, tiny_text_file, tmp_path):
    data = DataConfig(name="tiny", level="char", path=str(tiny_text_file))
    cfg = resolve_run(name, suite=SuiteFile(), data=data, train_values={"max_steps": 3},
                      sets=SETS[name] + [f"model.head={head}", "train.batch_size=4", "train.seq_len=16"])
    trainer = Trainer(cfg, load_corpus(cfg.data, tmp_path / "d", quiet=True))
    plan, model = trainer.plan, trainer.model
    assert plan.tokens_per_step == 4 * 16
    assert plan.flops_per_step == pytest.approx(plan.tokens_per_step * model.flops_per_token(True, plan.fed_len))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        trainer.train_step(1e-3)
    # the counter sees matmuls only (not the linear model's lookup-and-add sums); the adaptive head's tails run at the
    # batch's share of tail targets, the analytic count at the training split's
    matmuls = 3 * plan.tokens_per_step * model.matmul_flops_per_token(plan.fed_len)
    assert counter.get_total_flops() == pytest.approx(matmuls, rel=0.02 if head == "full" else 0.25)
    for _ in range(2):
        trainer.account(trainer.train_step(1e-3), 0.1)
    assert trainer.state.flops == pytest.approx(trainer.state.tokens * model.flops_per_token(True, plan.fed_len))
