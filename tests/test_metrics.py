"""ember.metrics: answer statistics by hand."""

import torch

from ember.metrics import answer_stats


def test_answer_stats_by_hand():
    correct = torch.tensor([[1, 1, 0, 1, 1, 1], [1, 0, 1, 1, 1, 1]], dtype=torch.bool)
    mask = torch.tensor([[0, 1, 1, 0, 1, 1], [1, 1, 0, 0, 1, 0]], dtype=torch.bool)
    answer_id = torch.tensor([[-1, 0, 0, -1, 1, 1], [0, 0, -1, -1, 1, -1]])
    group = torch.tensor([[-1, 0, 0, -1, 1, 1], [1, 1, -1, -1, 0, -1]])
    stats = answer_stats(correct, mask, answer_id, group, 2)
    # group 0: (ex 0, answer 0) has a wrong byte, (ex 1, answer 1) is right; group 1 likewise
    assert stats["answers"].tolist() == [2.0, 2.0] and stats["right"].tolist() == [1.0, 1.0]
    assert stats["bytes"].tolist() == [3.0, 4.0] and stats["right_bytes"].tolist() == [2.0, 3.0]
