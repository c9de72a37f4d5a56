"""Embedding -> residual layers -> RMSNorm -> byte logits, with one state per layer.

Letters: b batch, n tokens, p prefix tokens, d width, v vocabulary.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ember.errors import EmberConfigError, EmberDataError
from ember.state import LayerStates

MAX_LAYERS = 4096  # more layers than any model trains (GPT-3 has 96): a typo, refused before they are built


def check_stack_args(layers: int, vocab_size: int, reserved_tokens: int, d_ff: int | None, dropout: float):
    """Refuse the sizes of a language backbone's stack that no run can use, naming the fix: `layers` in all
    (1..MAX_LAYERS), vocab_size >= 1, reserved_tokens >= 0, d_ff >= 1 (or null), dropout in [0, 1)."""
    if not 1 <= layers <= MAX_LAYERS:
        raise EmberConfigError(f"{layers} layers in all: give 1 to {MAX_LAYERS} (blocks x layers_per_block)")
    if vocab_size < 1 or reserved_tokens < 0:
        raise EmberConfigError(f"vocab_size={vocab_size} must be >= 1 (256 for bytes) and reserved_tokens="
                               f"{reserved_tokens} >= 0")
    if d_ff is not None and d_ff < 1:
        raise EmberConfigError(f"d_ff={d_ff} must be >= 1, or null for 8/3 d_model")
    if not 0 <= dropout < 1:
        raise EmberConfigError(f"dropout={dropout} must be in [0, 1)")


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

    @torch.compiler.disable  # never traced: run eagerly, before a compiled graph (see forward)
    def check_ids(self, tokens: Tensor):
        """Refuse token ids outside the embedding (data of a larger vocabulary than vocab_size + reserved_tokens)
        with one message: an index error otherwise, on a GPU a device-side assert that ends the process. It waits
        on the device once a call, as the model's loss check does."""
        outside = (tokens < 0) | (tokens >= self.embed.num_embeddings)
        if bool(outside.any()):
            raise EmberDataError(f"the data holds token id {int(tokens[outside][0])}, outside the backbone's "
                                 f"{self.embed.num_embeddings} ids (vocab_size + reserved_tokens): raise the "
                                 "backbone's vocab_size to the data's (256 for bytes)")

    def forward(self, tokens: Tensor, state: LayerStates | None = None,
                prefix: Tensor | None = None) -> tuple[Tensor, LayerStates]:
        """tokens: (b, n) int64; prefix: (b, p, d) latent tokens placed before them, or None.

        Returns logits (b, n, v) for the token positions only, and the new LayerStates.
        """
        if not torch.compiler.is_compiling():  # a traced graph would break at the check's data-dependent branch
            self.check_ids(tokens)
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
