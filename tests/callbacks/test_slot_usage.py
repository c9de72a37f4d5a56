"""The slot-usage figure: every heat map sits exactly above its commit-rate strip, says which memory it is, and has
whole-number slot and span ticks."""

import numpy as np
import pytest

from ember.callbacks.slot_usage import describe, slot_usage_figure


def _figure():
    rng = np.random.default_rng(0)
    strengths = {"pm_L1": rng.random((9, 4)), "em_L0": rng.random((9, 128))}
    return slot_usage_figure(strengths, {k: rng.random(9) for k in strengths}, span=32, title="run x: q.yaml")


@pytest.mark.slow
def test_heat_maps_line_up_with_their_strips_and_say_what_they_are():
    fig = _figure()
    fig.canvas.draw()
    heat, strip = [ax for ax in fig.axes if ax.get_images()], [ax for ax in fig.axes if ax.get_lines()]
    assert len(heat) == len(strip) == 2
    for top, bottom in zip(heat, strip):
        a, b = top.get_position(), bottom.get_position()
        assert abs(a.x0 - b.x0) < 1e-6 and abs(a.x1 - b.x1) < 1e-6
        assert top.get_xlim() == bottom.get_xlim()
    titles = [ax.get_title() for ax in heat]
    assert titles[0].startswith("episodic store (EM), layer 0")
    assert titles[1].startswith("procedural memory (PM), layer 1")
    assert fig.get_suptitle() == "run x: q.yaml"


@pytest.mark.slow
def test_ticks_are_whole_slots_and_spans():
    fig = _figure()
    fig.canvas.draw()
    for ax in fig.axes[:-1]:
        for ticks in (ax.get_yticks() if ax.get_images() else ax.get_xticks(),):
            assert np.allclose(ticks, np.round(ticks))


def test_describe_leaves_unknown_names():
    assert describe("em_L2") == "episodic store (EM), layer 2" and describe("other") == "other"
