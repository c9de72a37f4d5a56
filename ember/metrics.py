"""Scoring of generated memory benchmarks: exact answers and answer bytes, per report group.

Letters: b batch, n target positions, a answers per example, g groups.
"""

from __future__ import annotations

import torch
from torch import Tensor


def answer_stats(correct: Tensor, mask: Tensor, answer_id: Tensor, group: Tensor,
                 groups: int) -> dict[str, Tensor]:
    """Counts per report group (each (g,) float): answers, exactly right answers, bytes, right bytes.

    Args:
        correct: (b, n) bool, prediction == target.
        mask: (b, n) bool, scored (answer) positions.
        answer_id: (b, n) int64, answer index within the example (-1 elsewhere).
        group: (b, n) int64, report group of the answer (-1 elsewhere).
        groups: number of report groups.
    """
    b = correct.shape[0]
    a = int(answer_id.max().clamp_min(0)) + 1
    slot = (torch.arange(b, device=correct.device)[:, None] * a + answer_id.clamp_min(0))[mask]  # (scored,)
    wrong = torch.zeros(b * a, device=correct.device).index_add_(0, slot, (~correct[mask]).float())
    present = torch.zeros(b * a, device=correct.device).index_add_(0, slot, torch.ones_like(slot, dtype=torch.float))
    answer_group = torch.zeros(b * a, dtype=torch.long, device=correct.device).index_copy_(0, slot, group[mask])
    is_answer = present > 0
    per_group = lambda values, at: torch.zeros(groups, device=correct.device).index_add_(0, at, values)  # noqa: E731
    return {
        "answers": per_group(is_answer[is_answer].float(), answer_group[is_answer]),
        "right": per_group((wrong[is_answer] == 0).float(), answer_group[is_answer]),
        "bytes": per_group(torch.ones_like(slot, dtype=torch.float), group[mask]),
        "right_bytes": per_group(correct[mask].float(), group[mask]),
    }
