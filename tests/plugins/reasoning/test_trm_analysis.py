"""The TRM analysis scripts (benchmarks/analysis/halting.py, show_thinking.py) on hand-made answers."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import load_script


def test_halting_table_scores_each_step_and_each_threshold():
    halting = load_script("benchmarks/analysis/halting.py")
    right = torch.tensor([[False, True, True], [False, False, True]])
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    halts = torch.tensor([[logit(0.6), logit(0.99), logit(0.99)], [logit(0.7), logit(0.8), logit(0.9)]])
    text = halting.table(right, halts, [0.5, 0.95])
    assert "| exact | 0.000 | 0.500 | 1.000 |" in text and "cells to fill" not in text
    assert "| cells to fill, right | 0.250 | 1.000 |" in halting.table(right[:, :2], halts[:, :2], [0.5],
                                                                      torch.tensor([0.25, 1.0]))
    assert "| 0.5 | 0.000 | 1.00 | 1.00 | 1.000 | 0.000 |" in text  # both read at step 1, where both are wrong
    # step 2 (fires, right), step 3 (never fires: the most confident); half the heads fire, all right
    assert "| 0.95 | 1.000 | 2.50 | 2.50 | 0.500 | 1.000 |" in text
    # both solved by some step and still right at the last; every right answer's logit (0.9, 0.99) is above
    # every wrong one's (0.6, 0.7, 0.8)
    assert "solved at some step: 1.000; of those, wrong after the last step: 0.000" in text
    assert "AUROC (right vs wrong answers, every step): 1.000" in text
    lost = halting.table(torch.tensor([[True, False], [False, False]]), torch.zeros(2, 2), [0.5])
    assert "solved at some step: 0.500; of those, wrong after the last step: 1.000" in lost
    assert "AUROC (right vs wrong answers, every step): 0.500" in lost  # a head that never changes ranks nothing


def test_show_thinking_colours_maze_cells_by_how_the_answer_compares():
    from ember.data_modules.maze import GOAL, OPEN, PATH, START, WALL

    show = load_script("benchmarks/analysis/show_thinking.py")
    inputs = torch.tensor([START, OPEN, OPEN, WALL, WALL, OPEN, WALL, OPEN, GOAL])  # 3x3, path along the edge
    labels = torch.tensor([START, PATH, PATH, WALL, WALL, PATH, WALL, OPEN, GOAL])
    answer = torch.tensor([START, PATH, OPEN, WALL, WALL, PATH, WALL, PATH, GOAL])  # misses cell 2, marks cell 7
    image = show.maze_image(inputs.numpy(), labels.numpy(), answer.numpy()).reshape(9, 3)
    colours = [tuple(float(v) for v in pixel) for pixel in image]
    assert colours[1] == colours[5] == show.RIGHT and colours[2] == show.MISSED and colours[7] == show.WRONG
    assert colours[3] == colours[4] == colours[6] == (0.2, 0.2, 0.2)  # walls
    truth = show.maze_image(inputs.numpy(), labels.numpy(), None).reshape(9, 3)
    assert [tuple(float(v) for v in truth[i]) for i in (1, 2, 5)] == [show.RIGHT] * 3  # the solution's path

    puzzles = {"inputs": inputs[None], "labels": labels[None], "step_preds": torch.stack([answer, labels])[None],
               "halt_logits": torch.tensor([[-3.0, 3.0]]), "read": torch.tensor([1])}
    fig = show.figure(puzzles, [1, 2], show.draw_maze, "test")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["puzzle and solution; read at step 2", "step 1: p(halt) 0.05, 2 wrong",
                      "step 2: p(halt) 0.95, exact"]
    frames = [ax.spines["top"].get_linewidth() for ax in fig.axes]
    assert frames[2] == 4 and frames[1] < 4  # the step read


def test_halting_script_refuses_a_config_that_is_not_a_trm(tmp_path, capsys):
    from helpers import ROOT

    halting = load_script("benchmarks/analysis/halting.py")
    assert halting.main(["--config", str(ROOT / "configs/debug/quickstart.yaml"),
                         "--ckpt_path", str(tmp_path / "none.ckpt")]) == 2
    assert "not a TinyRecursiveCore" in capsys.readouterr().err


@pytest.mark.parametrize("halt_probs, message", [("0.5,x", "give comma-separated values such as 0.5,0.9,0.95"),
                                                 ("0.5,1.5", "must be in (0, 1)")])
def test_halting_script_refuses_bad_thresholds_before_loading_anything(halt_probs, message, capsys):
    halting = load_script("benchmarks/analysis/halting.py")
    with pytest.raises(SystemExit) as exit_:
        halting.main(["--config", "missing.yaml", "--ckpt_path", "missing.ckpt", "--halt-probs", halt_probs])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
