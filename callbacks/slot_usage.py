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


KINDS = {"pm": "procedural memory (PM)", "em": "episodic store (EM)"}


def describe(name: str) -> str:
    """"pm_L1" -> "procedural memory (PM), layer 1"; other names unchanged."""
    kind, _, layer = name.partition("_L")
    return f"{KINDS[kind]}, layer {layer}" if kind in KINDS and layer.isdigit() else name


def slot_usage_figure(strengths: dict[str, np.ndarray], rates: dict[str, np.ndarray], span: int, title: str = ""):
    """One column per memory instance: a heat map of its slots' strengths over the session (slots x spans, colour =
    strength in [0, 1]) above its commit rate per span, on the same span axis; the colour bar has its own column,
    so heat maps and rate strips line up. `title` heads the figure (e.g. the run's name)."""
    import matplotlib  # deferred: a second to import, and only the plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred, as matplotlib above
    from matplotlib.ticker import MaxNLocator  # deferred, as matplotlib above

    names = sorted(strengths)
    fig = plt.figure(figsize=(3.6 * len(names) + 0.8, 5.6), layout="constrained")
    grid = fig.add_gridspec(2, len(names) + 1, height_ratios=[3, 1], width_ratios=[1] * len(names) + [0.06])
    for col, name in enumerate(names):
        s = strengths[name]  # (t, m)
        top = fig.add_subplot(grid[0, col])
        bottom = fig.add_subplot(grid[1, col], sharex=top)
        image = top.imshow(s.T, aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis", interpolation="nearest",
                           extent=(-0.5, s.shape[0] - 0.5, -0.5, s.shape[1] - 0.5))
        top.set_title(f"{describe(name)}\n{name}: {s.shape[1]} slots", fontsize=9)
        top.set_ylabel("slot" if col == 0 else None)
        top.tick_params(labelbottom=False)
        bottom.plot(np.arange(len(rates[name])), rates[name], color="tab:red", marker="." if len(rates[name]) < 40
                    else None)
        bottom.set(ylim=(0, 1.05), xlabel=f"span ({span} tokens each)", ylabel="commit rate" if col == 0 else None)
        bottom.grid(alpha=0.3)
        for axis in (top.yaxis, bottom.xaxis):
            axis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    fig.colorbar(image, cax=fig.add_subplot(grid[0, -1]), label="strength s")
    fig.suptitle(title or "Slot usage over one sequence, memories writing", fontsize=11)
    return fig
