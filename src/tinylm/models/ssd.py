"""Mamba-2's state-space layer by its state-space duality (SSD), chunk by chunk, with a hand-written backward.

Per head h with P channels, a state S (P x N) runs through the sequence:

    S_t = exp(a_t) S_{t-1} + u_t B_t^T,      y_t = S_t C_t

with log-decays a_t <= 0. Inside a chunk of Q positions this is a masked (Q x Q) matrix, (C B^T ∘ L) u with
L[t, s] = exp(a_{s+1} + ... + a_t) for s <= t; between chunks only the states are carried, one step per chunk.

Why a hand-written backward: autograd's backward of the (Q x Q) decays runs a dozen elementwise passes over
(batch x heads x T x Q) tensors, where the decays' gradient needs two (dM ∘ L and dM ∘ M, with M = C B^T ∘ L).

Why log-decays are floored at -60 before `exp`: exp of -inf, or of a number whose result is denormal in fp32, takes
a slow path (5x and 70x slower per element on the CPU); e^-60 ≈ 1e-26 is below fp32's resolution of anything it is
added to, and the causal mask is applied after `exp`, exactly. Together 1.24x faster than autograd's SSD on one
layer, 1.96x where the decays sum below -87 in a chunk, and the full profile's mamba step 1.10x (docs/speed.md).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

FLOOR = -60.0
"""The log-decay below which a decay counts as e^-60 (see the module's docstring)."""


def _chunks(x: torch.Tensor, n: int, Q: int) -> torch.Tensor:
    """(b, nQ, H, P) -> (b, H, n, Q, P), contiguous."""
    b, _, H, P = x.shape
    return x.view(b, n, Q, H, P).permute(0, 3, 1, 2, 4).contiguous()


def _over_heads(x: torch.Tensor) -> torch.Tensor:
    """(b, H, n, Q, P) -> (b, n, Q, H P): the heads side by side, so that one product sums over them."""
    b, H, n, Q, P = x.shape
    return x.permute(0, 2, 3, 1, 4).reshape(b, n, Q, H * P)


def _unchunk(x: torch.Tensor) -> torch.Tensor:
    """(b, H, n, Q, P) -> (b, nQ, H, P): `_over_heads`, positions back in one row."""
    b, H, n, Q, P = x.shape
    return _over_heads(x).view(b, n * Q, H, P)


def _heads_first(x: torch.Tensor) -> torch.Tensor:
    """(b, H, n, P, N) -> (b, n, H P, N), the other side of `_over_heads`' products."""
    b, H, n, P, N = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b, n, H * P, N)


class SSD(torch.autograd.Function):
    """`ssd` with its backward written out: the same matrix products as autograd's, two passes over the decays."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, a: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                state: torch.Tensor | None, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        b, T, H, P = u.shape
        N = B.size(-1)
        Q = min(chunk, T)
        pad = -T % Q  # zero inputs with zero log-decay at the end leave the state as it was
        if pad:
            u, a, B, C = (F.pad(x, (0, 0) * (x.dim() - 2) + (0, pad)) for x in (u, a, B, C))
        n = (T + pad) // Q
        u = _chunks(u, n, Q)  # (b, H, n, Q, P)
        cum = a.view(b, n, Q, H).permute(0, 3, 1, 2).cumsum(-1)  # (b, H, n, Q): log-decay from the chunk's start
        B, C = B.view(b, 1, n, Q, N), C.view(b, 1, n, Q, N)
        above = torch.ones(Q, Q, dtype=torch.bool, device=u.device).triu(1)
        L = (cum[..., :, None] - cum[..., None, :]).clamp_(FLOOR, 0).exp_().masked_fill_(above, 0)  # (b, H, n, Q, Q)
        M = L * (C @ B.transpose(-1, -2))
        y = M @ u  # inside each chunk
        w = (cum[..., -1:] - cum).clamp_(min=FLOOR).exp_()  # (b, H, n, Q): decay from each position to the chunk's end
        ends = (u * w[..., None]).transpose(-1, -2) @ B  # (b, H, n, P, N): what each chunk adds to the state
        g = cum[..., -1].clamp(min=FLOOR).exp_()  # (b, H, n): each chunk's whole decay
        s = state if state is not None else u.new_zeros(b, H, P, N)
        E = u.new_empty(b, H, n, P, N)  # the state entering each chunk
        for k in range(n):  # the scan: one step per chunk
            E[:, :, k] = s
            s = torch.addcmul(ends[:, :, k], g[:, :, k, None, None], s)
        ec = cum.clamp(min=FLOOR).exp_()
        R = C @ E.transpose(-1, -2)  # (b, H, n, Q, P): the entering states read out
        y.addcmul_(R, ec[..., None])
        ctx.save_for_backward(u, B, C, L, M, E, R, w, g, ec)
        ctx.sizes = T, pad, state is not None
        return _unchunk(y)[:, :T], s

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor, dfinal: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        u, B, C, L, M, E, R, w, g, ec = ctx.saved_tensors
        T, pad, has_state = ctx.sizes
        b, H, n, Q, P = u.shape
        N = B.size(-1)
        dy = _chunks(F.pad(dout, (0, 0, 0, 0, 0, pad)) if pad else dout, n, Q)
        # the read-out of the entering states, y += (C E^T) exp(cum)
        dR = dy * ec[..., None]
        dcum = (dy * R).sum(-1).mul_(ec)
        dC = _over_heads(dR) @ _heads_first(E)  # (b, n, Q, N)
        dE = dR.transpose(-1, -2) @ C  # (b, H, n, P, N)
        # the scan, backwards
        dS = dfinal if dfinal is not None else u.new_zeros(b, H, P, N)
        dends, dg = torch.empty_like(E), u.new_empty(b, H, n)
        for k in reversed(range(n)):
            dends[:, :, k] = dS
            dg[:, :, k] = (dS * E[:, :, k]).sum((-1, -2))
            dS = torch.addcmul(dE[:, :, k], g[:, :, k, None, None], dS)
        dcum[..., -1] += dg * g
        # the chunks' contributions, ends = (u w)^T B
        dV = B @ dends.transpose(-1, -2)  # (b, H, n, Q, P)
        dB = _over_heads(u * w[..., None]) @ _heads_first(dends)
        du = dV * w[..., None]
        dw = (dV * u).sum(-1).mul_(w)
        dcum -= dw
        dcum[..., -1] += dw.sum(-1)
        # inside the chunks, y = (C B^T ∘ L) u
        dM = dy @ u.transpose(-1, -2)
        du += M.transpose(-1, -2) @ dy
        dG = (dM * L).sum(1)  # (b, n, Q, Q)
        Z = dM.mul_(M)  # the gradient of each log-decay difference cum_t - cum_s
        dcum += Z.sum(-1) - Z.sum(-2)
        dC += dG @ B[:, 0]
        dB += dG.transpose(-1, -2) @ C[:, 0]
        da = dcum.flip(-1).cumsum(-1).flip(-1)  # cum sums a inside each chunk
        return (_unchunk(du)[:, :T], da.permute(0, 2, 3, 1).reshape(b, n * Q, H)[:, :T],
                dB.view(b, n * Q, N)[:, :T], dC.view(b, n * Q, N)[:, :T], dS if has_state else None, None)


def ssd(u: torch.Tensor, a: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk: int,
        state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The SSM over a sequence, chunk by chunk, in fp32.

    u (b, T, H, P): inputs already scaled by dt; a (b, T, H): log-decays dt A (<= 0); B, C (b, T, N); state
    (b, H, P, N) entering the sequence (None: zero). Returns y (b, T, H, P) without the skip, and the state after T.
    """
    return SSD.apply(u, a, B, C, state, chunk)


def ssd_step(u: torch.Tensor, a: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
             state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One position of `ssd` (T = 1) by the recurrence itself: u (b, H, P), a (b, H), B, C (b, N), state
    (b, H, P, N)."""
    b, H, P = u.shape
    N = B.size(-1)
    s = torch.addcmul(state * torch.exp(a)[..., None, None], u[..., None], B[:, None, None, :])  # (b, H, P, N)
    return torch.bmm(s.view(b, H * P, N), C[:, :, None]).view(b, H, P), s  # one product per sample, not per head
