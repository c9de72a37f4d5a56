"""A fixed induction head in a slot memory's queries and keys (SlotMemory's `induction` share of channels).

Letters: b batch, n tokens, d width, m tied channels, c the convolution's kernel (conv).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ember.errors import EmberConfigError


class InductionHead(nn.Module):
    """The first m = round(share * d) query and key channels, tied to the projected keys p = W_k x at fixed lags.

    Channel i of group j (the m channels split into c - 1 lag groups) reads lag j in the query and lag j + 1
    in the key:
        q_t[i] = p_{t-j}[i],   k_t[i] = p_{t-j-1}[i]   (i in group j, j = 0 .. c - 2),
    so q_t . k_s over these channels is large when tokens t, t-1, .. repeat s-1, s-2, .. : a query finds the
    item written right after the same context, and its value (token s) is what followed it there. The tie is
    structural (one projection, one-hot taps that are not trained), so no update can undo it; W_k still
    learns what of a token the match compares. The other d - m channels (and the values) keep the learned
    convolution, free to bind by anything else, e.g. a name and attribute asked about.
    """

    def __init__(self, d_model: int, conv: int, share: float, qkv_conv: nn.Conv1d | None):
        super().__init__()
        if not 0 < share <= 1:
            raise EmberConfigError(f"induction={share} is a share of the channels: use a value in (0, 1] "
                                   f"(0 or null: none)")
        if qkv_conv is None:
            raise EmberConfigError("induction needs conv >= 2 (a key must see the token before its value): set "
                                   "conv: 4")
        self.d, self.m = d_model, max(1, round(share * d_model))
        lag = torch.arange(self.m) * (conv - 1) // self.m  # (m,) each channel's lag group
        taps = torch.zeros(2 * self.m, 1, conv)  # output 2i: channel i's query, 2i + 1: its key
        now = conv - 1  # the kernel's last tap is lag 0
        taps[2 * torch.arange(self.m), 0, now - lag] = 1.0
        taps[2 * torch.arange(self.m) + 1, 0, now - lag - 1] = 1.0
        self.register_buffer("taps", taps, persistent=False)
        with torch.no_grad():  # the values start as their own token (lag 0); training moves them from there
            value_taps = torch.zeros_like(qkv_conv.weight[2 * d_model:])
            value_taps[..., now] = 1.0
            qkv_conv.weight[2 * d_model:] = value_taps

    def forward(self, full: Tensor, mixed: Tensor) -> Tensor:
        """full: (b, c - 1 + n, 3d) the projected q, k, v with the c - 1 before them; mixed: (b, n, 3d) after
        the learned convolution -> mixed with the tied query and key channels put in."""
        d, m = self.d, self.m
        keys = full[..., d:d + m].transpose(1, 2)  # (b, m, c - 1 + n)
        qk = F.conv1d(keys, self.taps.to(keys.dtype), groups=m).unflatten(1, (m, 2))  # (b, m, 2, n)
        q, k = qk.unbind(2)
        return torch.cat([q.transpose(1, 2), mixed[..., m:d], k.transpose(1, 2), mixed[..., d + m:]], dim=-1)
