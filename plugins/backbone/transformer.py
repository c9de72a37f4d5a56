"""TransformerBackbone: the baseline a user would pick instead of NML (full or sliding-window attention).

Letters: b batch, n tokens, p prefix tokens, d width, v vocabulary.
"""

from __future__ import annotations

from typing import Optional

from torch import Tensor

from ember.base import BackboneOutput, LanguageBackbone
from ember.errors import EmberConfigError
from ember.ops.attention.window import Backend
from ember.ops.layers import AttentionLayer
from ember.ops.stack import TokenStack, check_stack_args
from ember.state import LayerStates


class TransformerBackbone(LanguageBackbone):
    """Pre-norm causal transformer (RoPE, SwiGLU, RMSNorm) over bytes; full attention by default.

    Its state is the KV cache: it grows with the stream under full attention (window: null)
    and stays at W-1 entries per layer with a window (the sliding-window transformer baseline).

    Args:
        d_model: residual width.
        layers: number of transformer layers.
        heads: attention heads (must divide d_model).
        window: keys visible per query; null for full causal attention.
        attn_backend: "sdpa", "flex" or "xformers" (CUDA extra).
        d_ff: SwiGLU hidden width; default 8/3 * d_model rounded up to a multiple of 8.
        dropout: dropout on embeddings and residual branches.
        vocab_size: byte vocabulary (256).
        reserved_tokens: extra ids after the bytes for latent/prefix markers.
    """

    def __init__(self, d_model: int = 256, layers: int = 4, heads: int = 4, window: Optional[int] = None,
                 attn_backend: Backend = "sdpa", d_ff: Optional[int] = None, dropout: float = 0.0,
                 vocab_size: int = 256, reserved_tokens: int = 8):
        super().__init__()
        if min(d_model, layers, heads) < 1:
            raise EmberConfigError(f"d_model={d_model}, layers={layers} and heads={heads} must be >= 1")
        check_stack_args(layers, vocab_size, reserved_tokens, d_ff, dropout)
        self.d_model, self.vocab_size, self.window = d_model, vocab_size, window
        stack = [AttentionLayer(d_model, heads, window, attn_backend, d_ff, dropout) for _ in range(layers)]
        self.stack = TokenStack(vocab_size + reserved_tokens, d_model, stack, dropout)

    def forward(self, tokens: Tensor, state: LayerStates | None = None,
                prefix: Tensor | None = None) -> BackboneOutput:
        """Same contract as NMLBackbone.forward: logits (b, n, v + reserved) and the KV caches."""
        return BackboneOutput(*self.stack(tokens, state, prefix))

    def state_grows(self) -> bool:
        """Under full attention (window null) the KV cache holds every token of the stream."""
        return self.window is None
