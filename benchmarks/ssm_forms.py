"""Mamba-2's chunked SSD (the `mamba` model) against Mamba-1's selective scan, on Tiny Shakespeare.

Why the package computes its state-space model by SSD: this script trains both forms at the same width, depth,
state size, recipe and number of training tokens, one after the other on this machine, and records each one's
training tokens/s and validation and test log-likelihood.

The Mamba-1 form is a model of its own here, `SelectiveScanLM`, brought in as a plugin
(`benchmarks/ssm_forms.py:SelectiveScanLM`): the `mamba` blocks with Mamba-1's mixer, whose decay exp(dt A) has one
value per channel and state entry (A is D x N, dt per channel through a low-rank projection). It has no matrix
form, so the scan runs elementwise on (batch, chunk, D, N) tensors: a Hillis-Steele parallel scan inside each
chunk (log2 chunk steps of products of decays, all <= 1, so nothing overflows) and one step between chunks.

    python benchmarks/ssm_forms.py                  # 300k tokens each
    python benchmarks/ssm_forms.py --tokens 20000   # a smoke run

Takes about 5 minutes on one CPU core at the default 300k tokens (the selective scan four of them), 2 for the smoke
run.

Writes benchmarks/logs/ssm-forms-<date>.json (with --out, elsewhere) and prints one line per form.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tinylm.models.mamba import MambaConfig, MambaLM

ROOT = Path(__file__).resolve().parent.parent
SIZES = ["model.embed_dim=128", "model.n_layers=4", "model.d_state=16", "model.context_length=128",
         "model.dropout=0.0"]
RECIPE = ["train.batch_size=16", "train.learning_rate=0.002", "train.warmup_steps=50", "train.eval_interval=250",
          "train.eval_tokens=16384", "train.early_stopping_patience=0", "train.decay_from_warmup=true"]


@dataclass
class SelectiveScanConfig(MambaConfig):
    """Mamba-1 mixer: A per channel and state entry, dt per channel."""

    scan_chunk: int = 16
    """Positions per parallel-scan chunk."""


def selective_scan(u: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   chunk: int, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t, y_t = h_t C_t: u, dt (b, T, D); A (D, N); B, C (b, T, N)."""
    b, T, D = u.shape
    h = h if h is not None else u.new_zeros(b, D, A.size(1))
    ys = []
    for s in range(0, T, chunk):
        a = torch.exp(dt[:, s : s + chunk, :, None] * A)  # (b, q, D, N) decays
        v = (dt[:, s : s + chunk] * u[:, s : s + chunk])[..., None] * B[:, s : s + chunk, None, :]
        off = 1
        while off < a.size(1):  # Hillis-Steele: after the step for `off`, v_t sums the last 2 off inputs
            v = torch.cat([v[:, :off], v[:, off:] + a[:, off:] * v[:, :-off]], dim=1)
            a = torch.cat([a[:, :off], a[:, off:] * a[:, :-off]], dim=1)
            off *= 2
        hs = a * h[:, None] + v  # (b, q, D, N)
        ys.append((hs * C[:, s : s + chunk, None, :]).sum(-1))
        h = hs[:, -1]
    return torch.cat(ys, dim=1), h


class SelectiveMixer(nn.Module):
    """Mamba-1's mixer: in projection (x, z), causal convolution on x, x -> (dt, B, C), selective scan, gate."""

    def __init__(self, c: SelectiveScanConfig):
        super().__init__()
        D, N = c.inner, c.d_state
        self.D, self.N, self.R, self.chunk = D, N, math.ceil(c.embed_dim / 16), c.scan_chunk
        self.fc = nn.Linear(c.embed_dim, 2 * D, bias=False)
        bound = 1 / math.sqrt(c.conv_width)
        self.conv_weight = nn.Parameter(torch.empty(D, c.conv_width).uniform_(-bound, bound))
        self.conv_bias = nn.Parameter(torch.empty(D).uniform_(-bound, bound))
        self.x_proj = nn.Linear(D, self.R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(self.R, D)
        dt = torch.exp(torch.empty(D).uniform_(math.log(1e-3), math.log(1e-1)))
        self.dt_init = dt + torch.log(-torch.expm1(-dt))  # softplus^-1(dt): dt_proj's bias, set after init_weights
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(D, 1))
        self.skip = nn.Parameter(torch.ones(D))
        self.proj = nn.Linear(D, c.embed_dim, bias=False)

    def forward(self, x: torch.Tensor, cache: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        b, T, _ = x.shape
        xs, z = self.fc(x).split([self.D, self.D], dim=-1)
        k = self.conv_weight.size(1)
        before = cache.get("conv") if cache is not None else None
        seq = torch.cat([before if before is not None else xs.new_zeros(b, k - 1, self.D), xs], dim=1)
        xs = F.silu(self.conv_bias + sum(self.conv_weight[:, j] * seq[:, j : j + T] for j in range(k)))
        dt, B, C = self.x_proj(xs).split([self.R, self.N, self.N], dim=-1)
        dt = F.softplus(self.dt_proj(dt)).float()
        y, h = selective_scan(xs.float(), dt, -torch.exp(self.A_log), B.float(), C.float(), self.chunk,
                              cache.get("ssm") if cache is not None else None)
        if cache is not None:
            cache["conv"], cache["ssm"] = seq[:, seq.size(1) - (k - 1) :], h
        y = (y + self.skip * xs.float()).to(z.dtype)
        return self.proj(y * F.silu(z))


class SelectiveScanLM(MambaLM):
    """The `mamba` model with Mamba-1's selective-scan mixer in every block."""

    name = "selective-scan"
    color = "#bcbd22"
    config_class = SelectiveScanConfig

    def __init__(self, config: SelectiveScanConfig):
        super().__init__(config)
        for block in self.blocks:
            block.mixer = SelectiveMixer(config)
            nn.init.normal_(block.mixer.fc.weight, std=0.02)
            nn.init.normal_(block.mixer.x_proj.weight, std=0.02)
            nn.init.normal_(block.mixer.proj.weight, std=0.02 / math.sqrt(2 * config.n_layers))
            with torch.no_grad():
                block.mixer.dt_proj.bias.copy_(block.mixer.dt_init)

    def matmul_flops_per_token(self, seq_len: int | None = None) -> float:
        """Per layer the projections: in 2d(2D), x 2D(R+2N), dt 2RD, out 2Dd; the head's. The scan is elementwise."""
        c, m = self.config, self.blocks[0].mixer
        d, D, N, R = c.embed_dim, c.inner, c.d_state, m.R
        return float(c.n_layers * (4 * d * D + 2 * D * (R + 2 * N) + 2 * R * D + 2 * D * d)
                     + self.head.flops_per_token())

    def other_flops_per_token(self, seq_len: int | None = None) -> float:
        """The convolution, 2kD per layer (the scan's elementwise work is not counted here)."""
        return float(self.config.n_layers * 2 * self.config.conv_width * self.config.inner)


def train(model: str, tokens: int, results: Path) -> dict:
    """One `tinylm train` run of `model` at the shared sizes and recipe; its metrics."""
    sets = [f"--set={s}" for s in SIZES + RECIPE]
    cmd = ["tinylm", "train", "--model", model, "--dataset", "tinyshakespeare", "--max-tokens", str(tokens),
           "--precision", "fp32", "--results-dir", str(results), "--quiet", *sets]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    wall = time.perf_counter() - start
    (metrics_path,) = results.glob("runs/*/metrics.json")  # one run in its own folder
    m = json.loads(metrics_path.read_text())
    return {"model": model, "wall_seconds": wall, **{k: m.get(k) for k in (
        "run_id", "params", "tokens_trained", "train_seconds", "tokens_per_second", "train_flops", "valid_loglik",
        "test_loglik")}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=300_000, help="training tokens per form (default 300k)")
    p.add_argument("--out", help="the record to write (default benchmarks/logs/ssm-forms-<date>.json)")
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [train(m, args.tokens, Path(tmp) / m.replace("/", "_")) for m in (
            "mamba", "benchmarks/ssm_forms.py:SelectiveScanLM")]
    record = {"what": "Mamba-2 SSD against Mamba-1's selective scan at equal sizes, recipe and tokens",
              "sizes": SIZES, "recipe": RECIPE, "tokens": args.tokens, "torch": torch.__version__, "runs": rows,
              "ssd_speedup": rows[0]["tokens_per_second"] / rows[1]["tokens_per_second"]}
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "logs" / f"ssm-forms-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    for r in rows:
        print(f"{r['model']:<45} {r['tokens_per_second']:>8,.0f} tok/s  valid {r['valid_loglik']:.4f}  "
              f"test {r['test_loglik']:.4f}")
    print(f"SSD trains {record['ssd_speedup']:.2f}x the selective scan's tokens/s; wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
