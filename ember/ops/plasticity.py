"""Procedural-memory math (SPEC 3.2): read, eligibility trace, neuromodulated commit.

Letters: b batch, n tokens, r slots, d width, k slots written per commit (top-k).

Every function is pure (tensors in, tensors out) and differentiable with respect to the
neuromodulator outputs g, eta, lam, tau, so a learned controller is trained by the main loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def pm_read(q: Tensor, K: Tensor, V: Tensor, s: Tensor) -> Tensor:
    """y_t = sum_i s_i softmax_i(q_t . K_i / sqrt(d)) V_i, O(r d) per token.

    Args:
        q: (b, n, d) queries; K, V: (b, r, d) slot keys and values; s: (b, r) strengths in [0, 1].

    Returns:
        (b, n, d) read-out (before the output projection).
    """
    att = torch.softmax(torch.einsum("bnd,brd->bnr", q, K) / math.sqrt(q.shape[-1]), dim=-1)  # (b, n, r)
    return torch.einsum("bnr,brd->bnd", att * s[:, None, :], V)


def eligibility(x: Tensor, e0: Tensor, rho: float) -> Tensor:
    """Decaying trace e_t = rho * e_{t-1} + (1 - rho) * x_t over a span; returns e after its last token.

    Args:
        x: (b, n, d) per-token activity; e0: (b, d) trace before the span; rho: decay in [0, 1).
    """
    n = x.shape[1]
    # closed form of the constant-gate scan: e_n = rho^n e0 + sum_t (1 - rho) rho^(n-1-t) x_t
    weights = (1.0 - rho) * rho ** torch.arange(n - 1, -1, -1, device=x.device, dtype=x.dtype)  # (n,)
    return rho**n * e0 + torch.einsum("bnd,n->bd", x, weights)


def slot_weights(K: Tensor, s: Tensor, k_e: Tensor, tau: Tensor, beta: float, top_k: int) -> Tensor:
    """w = softmax over the top-k slots of (cos(K_i, k_e) - beta * (1 - s_i)) / tau; 0 elsewhere.

    Args:
        K: (b, r, d); s: (b, r); k_e: (b, d) candidate key; tau: (b,) temperature > 0.

    Returns:
        (b, r) slot weights summing to 1 over the chosen slots.
    """
    score = (F.cosine_similarity(K, k_e[:, None, :], dim=-1, eps=1e-8) - beta * (1.0 - s)) / tau[:, None]
    keep = torch.zeros_like(score, dtype=torch.bool).scatter_(1, score.topk(top_k, dim=-1).indices, True)
    return torch.softmax(score.masked_fill(~keep, float("-inf")), dim=-1)


def unit(x: Tensor, eps: float = 1e-6) -> Tensor:
    """x / ||x|| along the last dim, and 0 where ||x|| <= eps, with a zero (not NaN) gradient there.

    F.normalize back-propagates NaN through an all-zero row (an empty slot), and the direction of
    a vector that is only starting to grow is undefined anyway.
    """
    sumsq = x.pow(2).sum(-1, keepdim=True)
    return torch.where(sumsq > eps * eps, x * torch.rsqrt(sumsq.clamp_min(eps * eps)), torch.zeros_like(x))


def pm_commit(K: Tensor, V: Tensor, s: Tensor, k_e: Tensor, v_e: Tensor, w: Tensor, g: Tensor, eta: Tensor,
              lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One commit at a plasticity boundary (SPEC 3.2):

        K <- normalize(K + g w (k_e - K))
        V <- V + g w (v_e - V)
        s <- clamp(lam s + g eta w, 0, 1)

    Args:
        K, V: (b, r, d); s: (b, r); k_e, v_e: (b, d) eligibility trace; w: (b, r) slot weights;
        g: (b,) commit gate in [0, 1]; eta: (b,) write strength; lam: (b,) decay in [0, 1].
    """
    gw = (g[:, None] * w)[..., None]  # (b, r, 1)
    K = unit(K + gw * (k_e[:, None, :] - K))
    V = V + gw * (v_e[:, None, :] - V)
    s = (lam[:, None] * s + g[:, None] * eta[:, None] * w).clamp(0.0, 1.0)
    return K, V, s


def em_read(q: Tensor, K: Tensor, V: Tensor, s: Tensor, top_k: int, scale: Tensor | None = None) -> Tensor:
    """Episodic read: each token takes the top-k items by strength-weighted similarity
    s_i cos(q_t, K_i) and attends over them with the strengths as prior weights and a null item:

        y_t = sum_{j in top-k} s_j exp(l_tj) V_j / (1 + sum_{j in top-k} s_j exp(l_tj)),  l_tj = q_t . K_j / sqrt(d)

    or, with a `scale` tau, the cosine logits l_tj = tau cos(q_t, K_j), whose sharpness does not wait for the
    query's norm to grow.

    A confident match returns its value at full scale whatever its strength (the null item, with
    weight 1, only wins against weak or poor matches), and an empty memory returns exactly 0.

    Args:
        q: (b, n, d); K, V: (b, m, d) items, keys of unit norm or 0 (as em_write keeps them);
        s: (b, m) strengths; top_k: items per token; scale: tau of the cosine logits (a scalar or (1,)), or None.

    Returns:
        (b, n, d); empty items (s = 0) contribute nothing.
    """
    qk = torch.einsum("bnd,bmd->bnm", q, K)  # (b, n, m)
    cos = qk / q.norm(dim=-1, keepdim=True).clamp_min(1e-8)  # cos(q_t, K_i): unit keys
    score = s[:, None, :] * cos
    idx = score.topk(min(top_k, K.shape[1]), dim=-1).indices  # (b, n, k)
    # dense over the items with the unpicked and empty ones at -inf: no (b, n, k, d) gather of V,
    # whose backward would zero-fill and scatter into an expanded (b, n, m, d) copy of V
    picked = torch.zeros_like(score, dtype=torch.bool).scatter_(-1, idx, True) & (s > 0)[:, None, :]  # (b, n, m)
    logits = (qk / math.sqrt(q.shape[-1]) if scale is None else scale * cos) + s.clamp_min(1e-30).log()[:, None, :]
    prior = torch.cat([logits.new_zeros(*logits.shape[:-1], 1), logits.masked_fill(~picked, float("-inf"))], -1)
    weights = torch.softmax(prior.to(torch.promote_types(prior.dtype, torch.float32)), dim=-1)[..., 1:]  # null first
    return torch.einsum("bnm,bmd->bnd", weights.to(q.dtype), V)


def merge_or_weakest(K: Tensor, s: Tensor, k: Tensor, merge_threshold: float) -> tuple[Tensor, Tensor]:
    """Episodic write targets as one-hot slot weights w (b, c, m), one row per candidate j = 1..c:
    the most similar live item when cos(K_i, k_j) > merge_threshold (merge), otherwise the j-th
    weakest item (overwrite; distinct candidates overwrite distinct items). Also returns which
    candidates merge, (b, c) bool.

    Args:
        K: (b, m, d) items; s: (b, m) strengths (0 = empty); k: (b, c, d) candidate keys, c <= m.
    """
    sim = torch.einsum("bmd,bcd->bcm", unit(K), unit(k)).masked_fill((s <= 0)[:, None, :], -2.0)  # (b, c, m)
    best_sim, best = sim.max(dim=-1)  # (b, c)
    weakest = s.argsort(dim=-1, stable=True)[:, : k.shape[1]]  # (b, c)
    merged = best_sim > merge_threshold
    target = torch.where(merged, best, weakest)
    return F.one_hot(target, K.shape[1]).to(K.dtype), merged


def em_write(K: Tensor, V: Tensor, s: Tensor, k: Tensor, v: Tensor, w: Tensor, merged: Tensor, g: Tensor,
             eta: Tensor, lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """c simultaneous episodic writes at a boundary (SPEC 3.2), candidates j with targets w_j.

    A merge blends the candidate into the item by its gate; an overwrite replaces the weakest
    item's content outright (its old strength was the lowest) whenever the gate is open, and the
    gate then sets the new item's strength:

        r_j = g_j (merge) or 1[g_j > 0] (overwrite);   o = sum_{j overwrites, g_j > 0} w_j  (items replaced)
        K <- normalize(K + sum_j r_j w_j (k_j - K)),   V <- V + sum_j r_j w_j (v_j - V)
        s <- clamp((1 - o) lam s + sum_j g_j eta w_j, 0, 1)

    Args:
        K, V: (b, m, d); s: (b, m); k, v: (b, c, d) candidates; w: (b, c, m) one-hot targets;
        merged: (b, c) bool, the candidates that merge; g: (b, c) per-candidate gates in [0, 1];
        eta: (b,) write strength; lam: (b,) decay in [0, 1].
    """
    rate = torch.where(merged, g, (g > 0).to(g.dtype))  # (b, c)
    rw = rate[..., None] * w  # (b, c, m)
    K = unit(K + torch.einsum("bcm,bcd->bmd", rw, k) - rw.sum(1)[..., None] * K)
    V = V + torch.einsum("bcm,bcd->bmd", rw, v) - rw.sum(1)[..., None] * V
    overwrites = (~merged & (g > 0)).to(w.dtype)  # (b, c): open-gate overwrites
    replaced = (w * overwrites[..., None]).sum(1).clamp(max=1.0)  # (b, m) items replaced
    s = ((1.0 - replaced) * lam[:, None] * s + eta[:, None] * (g[..., None] * w).sum(1)).clamp(0.0, 1.0)
    return K, V, s
