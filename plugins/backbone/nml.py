"""NMLBackbone: the H-module of Neural Memory Layers (SPEC 3.1).

Letters: b batch, n tokens, p prefix tokens, d width, v vocabulary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Optional

from torch import Tensor

from ember.base import BackboneOutput, EpisodicMemory, LanguageBackbone, ProceduralMemory
from ember.errors import EmberConfigError
from ember.ops.attention.window import Backend
from ember.ops.layers import NMLLayer, NMLLayerState
from ember.ops.memory_read import MemoryReadLayer
from ember.ops.scan import ScanKind
from ember.ops.stack import TokenStack, check_stack_args
from ember.state import LayerStates, StateBase


class NMLBackbone(LanguageBackbone):
    """Byte-level stack of Neural Memory Layers: affine scan + sliding-window working memory.

    B blocks of L layers. Each layer: scan mixer, windowed attention (WM), optional procedural
    memory read, SwiGLU. Each block starts with an optional episodic memory read (a layer of its
    own: block 1's reads the embeddings, later ones the previous block's output; reading inside the
    first layer after its window attention, as SPEC 3.1 orders it, learned MQAR far more slowly,
    BENCHMARKS section 6). State per
    stream (scan states, last W-1 keys/values, memory states) is explicit and constant-size.

    Args:
        d_model: residual width.
        blocks: number of blocks B.
        layers_per_block: layers per block L.
        heads: attention heads of the working memory (must divide d_model).
        window: working-memory window W in tokens (keys visible per query, itself included).
        attn_backend: "sdpa" (reference, any device), "flex" (FlexAttention) or "xformers" (CUDA extra).
        scan: "chunked" (default), "parallel" (Hillis-Steele) or "naive" (step-by-step reference).
        d_ff: SwiGLU hidden width; default 8/3 * d_model rounded up to a multiple of 8.
        dropout: dropout on embeddings and residual branches.
        vocab_size: byte vocabulary (256).
        reserved_tokens: extra ids after the bytes for latent/prefix markers.
        pm: procedural memory factory, called with d_model once per layer; null disables PM.
        em: episodic memory factory, called with d_model once per block; null disables EM.
    """

    def __init__(self, d_model: int = 256, blocks: int = 1, layers_per_block: int = 4, heads: int = 4,
                 window: int = 256, attn_backend: Backend = "sdpa", scan: ScanKind = "chunked",
                 d_ff: Optional[int] = None, dropout: float = 0.0, vocab_size: int = 256,
                 reserved_tokens: int = 8,
                 pm: Optional[Callable[[int], ProceduralMemory]] = None,
                 em: Optional[Callable[[int], EpisodicMemory]] = None):
        super().__init__()
        if min(blocks, layers_per_block, d_model, heads) < 1:
            raise EmberConfigError(f"blocks={blocks}, layers_per_block={layers_per_block}, d_model={d_model} and "
                                   f"heads={heads} must be >= 1")
        check_stack_args(blocks * layers_per_block, vocab_size, reserved_tokens, d_ff, dropout)
        self.d_model, self.vocab_size = d_model, vocab_size
        layers = []
        for _ in range(blocks):
            if em is not None:
                layers.append(MemoryReadLayer(d_model, em(d_model)))
            layers += [NMLLayer(d_model, heads, window, attn_backend, d_ff, scan, dropout,
                                pm=None if pm is None else pm(d_model))
                       for _ in range(layers_per_block)]
        self.stack = TokenStack(vocab_size + reserved_tokens, d_model, layers, dropout)

    def forward(self, tokens: Tensor, state: LayerStates | None = None,
                prefix: Tensor | None = None) -> BackboneOutput:
        """Args:
            tokens: (b, n) int64 byte ids.
            state: LayerStates from the previous chunk of the same streams, or None (fresh streams).
            prefix: (b, p, d) latent tokens placed before the bytes, or None.

        Returns:
            BackboneOutput(logits (b, n, v + reserved), state (LayerStates, carries state)).
        """
        return BackboneOutput(*self.stack(tokens, state, prefix))

    def modulate(self, state: LayerStates | None, modulation: Tensor) -> LayerStates:
        """The state with `modulation` (b, k) handed to every PM and EM (see LanguageBackbone.modulate). For a
        fresh stream (None) only the memories' states are made; the other layers make theirs at the first call."""
        states = [None] * len(self.stack.layers) if state is None else list(state.layers)
        for i, layer in enumerate(self.stack.layers):
            if isinstance(layer, MemoryReadLayer):
                states[i] = layer.memory.modulate(states[i], modulation)
            elif layer.pm is not None:
                held = states[i] if states[i] is not None else NMLLayerState(None, None, None)
                states[i] = dataclasses.replace(held, pm=layer.pm.memory.modulate(held.pm, modulation))
        return LayerStates(states)

    def end_session(self, state: LayerStates) -> LayerStates:
        """Session end: every PM and EM commits its open span (SPEC 3.2)."""
        return self.stack.flush(state)

    def memory_report(self, state: LayerStates) -> dict[str, StateBase]:
        """{"pm_L<i>": state of layer i's PM, "em_L<i>": state of the EM read at layer i} (see LanguageBackbone)."""
        report = {}
        for i, (layer, layer_state) in enumerate(zip(self.stack.layers, state.layers)):
            if isinstance(layer, MemoryReadLayer):
                report[f"em_L{i}"] = layer_state
            elif layer.pm is not None:
                report[f"pm_L{i}"] = layer_state.pm
        return report
