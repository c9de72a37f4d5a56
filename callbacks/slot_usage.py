"""Slot usage over a session: each memory instance's slot strengths, span by span, as a picture.

Letters: t spans, m slots (r for PM, M for EM).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ember.ops.slot_memory import SlotMemoryState


@torch.no_grad()
def trace_slot_usage(model, tokens: Tensor, span: int, state=None) -> tuple[dict[str, np.ndarray], dict]:
    """Stream tokens (1, n) through model (an EmberModel) span by span (memories writing) and record, per memory
    instance ("pm_L1", "em_L0", ...: its backbone's `memory_report`), the strengths s after every span,
    {instance: (t, m)}, and the commit rates {instance: (t,)}. Returns ({}, {}) for a model without memories."""
    strengths: dict[str, list] = {}
    rates: dict[str, list] = {}
    for start in range(0, tokens.shape[1], span):
        _, state = model(tokens[:, start : start + span], state)
        for name, memory in model.backbone.memory_report(state).items():
            if isinstance(memory, SlotMemoryState):
                strengths.setdefault(name, []).append(memory.s[0].float().cpu().numpy())
                rates.setdefault(name, []).append(float(memory.commit_rate[0]))
    return {k: np.stack(v) for k, v in strengths.items()}, {k: np.array(v) for k, v in rates.items()}


def slot_usage_figure(strengths: dict[str, np.ndarray], rates: dict[str, np.ndarray], span: int):
    """One heat map per memory instance (slots x spans, colour = strength in [0, 1]) over its commit rate."""
    import matplotlib  # deferred: a second to import, and only the plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred, as matplotlib above

    names = sorted(strengths)
    fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 5), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]}, sharex="col")
    for col, name in enumerate(names):
        s = strengths[name]  # (t, m)
        image = axes[0, col].imshow(s.T, aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis",
                                    interpolation="nearest")
        axes[0, col].set(title=f"{name}: {s.shape[1]} slots", ylabel="slot" if col == 0 else None)
        axes[1, col].plot(rates[name], color="tab:red")
        axes[1, col].set(ylim=(0, 1.05), xlabel=f"span ({span} tokens)", ylabel="commit rate" if col == 0 else None)
        axes[1, col].grid(alpha=0.3)
    fig.colorbar(image, ax=axes[0, :].tolist(), label="strength s", shrink=0.8)
    return fig
