"""HeuristicNeuromodulator: commits only above its surprise threshold."""

import torch

from ember.base import SpanSummary
from ember.plugins.neuromod.heuristic import HeuristicNeuromodulator


def test_heuristic_commits_only_above_the_threshold():
    ctrl = HeuristicNeuromodulator(4, threshold=1.0)
    summary = SpanSummary(torch.zeros(3, 4), torch.tensor([0.5, 1.0, 1.5]), torch.zeros(3))
    assert ctrl(summary).g.tolist() == [0.0, 0.0, 1.0]
