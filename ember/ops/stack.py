"""Embedding -> residual layers -> RMSNorm -> byte logits, with one state per layer.

Letters: b batch, n tokens, p prefix tokens, d width, v vocabulary.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ember.state import LayerStates


class TokenStack(nn.Module):
    """Shared body of the language backbones.

    Args:
        vocab_size: embedding rows and logit columns (bytes plus reserved ids).
        d_model: residual width.
        layers: the residual layers, each `(x, state) -> (x, state)`.
        dropout: on the embeddings.
    """

    def __init__(self, vocab_size: int, d_model: int, layers: list[nn.Module], dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList(layers)
        self.norm = nn.RMSNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.drop = nn.Dropout(dropout)
        self.apply(self._init_weights)
        residual_std = 0.02 / math.sqrt(2 * len(layers))  # GPT-2: scale the projections into the residual
        for name, p in self.named_parameters():
            if name.endswith(("out.weight", "down.weight")):
                nn.init.normal_(p, std=residual_std)

    @staticmethod
    def _init_weights(module: nn.Module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, tokens: Tensor, state: LayerStates | None = None,
                prefix: Tensor | None = None) -> tuple[Tensor, LayerStates]:
        """tokens: (b, n) int64; prefix: (b, p, d) latent tokens placed before them, or None.

        Returns logits (b, n, v) for the token positions only, and the new LayerStates.
        """
        x = self.embed(tokens)  # (b, n, d)
        if prefix is not None:
            x = torch.cat([prefix.to(x.dtype), x], dim=1)  # (b, p + n, d)
        x = self.drop(x)
        states = [None] * len(self.layers) if state is None else state.layers
        new_states = []
        for layer, layer_state in zip(self.layers, states):
            x, layer_state = layer(x, layer_state)
            new_states.append(layer_state)
        x = self.norm(x[:, x.shape[1] - tokens.shape[1]:])
        return self.head(x), LayerStates(new_states)

    def flush(self, state: LayerStates) -> LayerStates:
        """Session end: every layer with a plastic memory commits its open span."""
        return LayerStates([layer.flush(s) if hasattr(layer, "flush") else s
                            for layer, s in zip(self.layers, state.layers)])
