"""JEPA pieces (Assran et al. 2023, I-JEPA, on 1-D time patches): block masks, the predictor,
the loss on layer-normed targets, and the collapse metric.

    targets  = LN(f_target(all patches))[target blocks]           (no gradient)
    context  = f_context(patches[visible])
    loss     = smooth_l1(g(context, target positions), targets)

Letters: b batch, s patches, v visible (context) patches, m masked (target) patches, d width,
e predictor width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ember.errors import EmberDataError
from ember.ops.positions import sinusoid


def block_mask(s: int, blocks: int, block_len: int, generator: torch.Generator | None = None,
               device=None) -> tuple[Tensor, Tensor]:
    """Choose `blocks` runs of `block_len` consecutive patches as targets; the rest is context.

    Runs may overlap (then fewer patches are masked). Returns sorted (context_idx (v,), target_idx (m,))
    int64, shared by the whole batch. Raises when no context patch would remain.
    """
    if block_len >= s:
        raise EmberDataError(f"block_len={block_len} leaves no context in a sequence of {s} patches: lower "
                             "block_len or use longer audio")
    starts = torch.randint(0, s - block_len + 1, (blocks,), generator=generator)
    masked = torch.zeros(s, dtype=torch.bool)
    for start in starts.tolist():
        masked[start : start + block_len] = True
    if masked.all():
        masked[int(torch.randint(0, s, (1,), generator=generator))] = False
    idx = torch.arange(s)
    return idx[~masked].to(device), idx[masked].to(device)


class JEPAPredictor(nn.Module):
    """Predicts target embeddings at masked positions from the context tokens (a narrow transformer).

        z = [W_in c + P[context_idx] ; q + P[target_idx]]   (b, v + m, e), q a learned mask token
        prediction = W_out LN(Transformer(z))[:, v:]        (b, m, d)

    Args:
        d_model: encoder width d (in and out).
        width: predictor width e.
        depth: transformer layers.
        heads: attention heads (width must be divisible by heads).
    """

    def __init__(self, d_model: int, width: int, depth: int, heads: int):
        super().__init__()
        self.inp, self.out = nn.Linear(d_model, width), nn.Linear(width, d_model)
        self.mask_token = nn.Parameter(torch.zeros(width))
        nn.init.normal_(self.mask_token, std=0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def forward(self, context: Tensor, context_idx: Tensor, target_idx: Tensor) -> Tensor:
        """context: (b, v, d) context-encoder tokens; *_idx: (v,), (m,) positions -> (b, m, d) predictions."""
        width = self.mask_token.numel()
        z_ctx = self.inp(context) + sinusoid(context_idx, width).to(context.dtype)  # (b, v, e)
        z_tgt = (self.mask_token + sinusoid(target_idx, width).to(context.dtype)).expand(context.shape[0], -1, -1)
        z = self.blocks(torch.cat((z_ctx, z_tgt), dim=1))  # (b, v + m, e)
        return self.out(self.norm(z[:, context.shape[1] :]))


def jepa_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Smooth-L1 between predictions and layer-normed targets (target carries no gradient). Both (b, m, d)."""
    target = F.layer_norm(target.detach(), target.shape[-1:])
    return F.smooth_l1_loss(prediction, target)


@torch.no_grad()
def embedding_spread(embeddings: Tensor) -> Tensor:
    """Collapse metric: mean over d of the std across all b*s tokens of the layer-normed embeddings.

    embeddings: (b, s, d) -> scalar. Near 1 when tokens differ, 0 when every token maps to the same vector.
    """
    z = F.layer_norm(embeddings.float(), embeddings.shape[-1:]).flatten(0, -2)  # (b s, d)
    return z.std(dim=0).mean()
