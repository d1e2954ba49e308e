"""The CUDA path: bf16 training, fp32 evaluation that agrees with the CPU, the GPU bench. Runs only
where a CUDA GPU is present (never in CI)."""

from __future__ import annotations

import pytest
import torch

from tinylm.config import DataConfig
from tinylm.paths import Paths
from tinylm.recorder import train_run
from tinylm.run_folders import load_run, load_run_corpus
from tinylm.suite_file import SuiteFile, resolve_run
from tinylm.training.evaluate import evaluate

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TINY = ["model.context_length=32", "model.embed_dim=64", "model.n_layers=2", "train.eval_interval=10",
        "train.eval_tokens=500", "train.batch_size=8"]
HEADS = {"transformer": ["model.n_heads=4"], "llama": ["model.n_heads=4"], "mamba": ["model.head_dim=16"],
         "lstm": ["model.hidden_dim=64"]}


@pytest.mark.parametrize("model", list(HEADS))
def test_bf16_training_on_cuda_is_scored_in_fp32_like_on_the_cpu(model, tiny_text_file, tmp_path):
    data = DataConfig(name="tiny", level="char", path=str(tiny_text_file))
    cfg = resolve_run(model, suite=SuiteFile(), data=data,
                      train_values={"max_steps": 30, "device": "cuda"}, sets=TINY + HEADS[model])
    metrics, run_dir, _ = train_run(cfg, Paths.of(tmp_path / "results", tmp_path / "d"), quiet=True)
    assert metrics.precision == "bf16" and metrics.eval_precision == "fp32"
    assert "cpu" not in metrics.device
    run = load_run(run_dir)
    corpus = load_run_corpus(run, Paths.of(tmp_path / "results", tmp_path / "d"))
    on_cpu = evaluate(run.model, corpus.tensor("test"), batch_size=64)
    assert on_cpu.loglik == pytest.approx(metrics.test_loglik, abs=1e-4)


def test_the_padded_full_head_on_cuda_equals_the_plain_matmul():
    from tinylm.models.heads import FullHead

    head = FullHead(16, 33278, bias=False)  # WikiText-2's vocabulary: padded to 33,280 on CUDA
    h = torch.randn(4, 7, 16)
    on_cpu = head(h)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # a run configured earlier in the session may have turned it on
    try:
        on_cuda = head.cuda()(h.cuda()).cpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    assert on_cuda.shape == on_cpu.shape == (4, 7, 33278)
    torch.testing.assert_close(on_cuda, on_cpu, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_the_byte_mask_dropout_keeps_the_same_share_on_cuda(p):
    from tinylm.models.base import Dropout

    torch.manual_seed(0)
    out = Dropout(p).train()(torch.ones(4_000_000, device="cuda"))
    q = 1 - round(p * 256) / 256
    assert abs((out != 0).double().mean().item() - q) < 5 * (q * (1 - q) / 4_000_000) ** 0.5
    assert (out[out != 0] == 256 / (256 - round(p * 256))).all()


def test_the_hand_written_backwards_pass_gradcheck_on_cuda():
    from tinylm.models.base import RMSNormFunction
    from tinylm.models.llama import GatedUnit, rotary_tables, rotate
    from tinylm.models.mamba import CausalConv
    from tinylm.models.ssd import SSD

    g = torch.Generator(device="cuda").manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, dtype=torch.float64, device="cuda", generator=g, requires_grad=True)

    assert torch.autograd.gradcheck(CausalConv.apply, (rand(2, 3 + 9, 5), rand(5, 4), rand(5)))
    assert torch.autograd.gradcheck(GatedUnit.apply, (rand(2, 5, 12),))
    assert torch.autograd.gradcheck(lambda a, w: RMSNormFunction.apply(a, w, 1e-5), (rand(3, 4, 6), rand(6)))
    cos, sin = (t.double().cuda() for t in rotary_tables(8, 7, 10000.0))
    assert torch.autograd.gradcheck(lambda t: rotate(t, cos, sin), (rand(2, 3, 7, 8),))
    decays = (-torch.rand(2, 9, 3, dtype=torch.float64, device="cuda", generator=g)).requires_grad_()
    assert torch.autograd.gradcheck(lambda *x: SSD.apply(*x, 4), (rand(2, 9, 3, 4), decays, rand(2, 9, 5),
                                                                  rand(2, 9, 5), rand(2, 3, 4, 5)))
