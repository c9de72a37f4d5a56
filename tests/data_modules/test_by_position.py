"""benchmarks/analysis/by_position.py: memory-task answers scored at their start and bucketed by position."""

import re

import pytest
import torch

from helpers import ROOT, load_script, untrained_checkpoint


def test_by_position_scores_whole_answers_at_their_start_and_buckets_them():
    by_position = load_script("benchmarks/analysis/by_position.py")
    tokens = torch.tensor([[9, 1, 2, 3, 4, 5, 6]])  # targets 1..6
    batch = {"tokens": tokens, "loss_mask": torch.tensor([[0, 1, 1, 0, 1, 0]]).bool(),
             "answer_id": torch.tensor([[-1, 0, 0, -1, 1, -1]])}
    preds = torch.tensor([[0, 2, 9, 0, 5, 0]])  # answer 0 (targets 2, 3) half wrong, answer 1 (target 5) right
    scored = by_position.answers(batch, preds)
    assert scored == [(1, False), (4, True)]
    text = by_position.table(scored, [2, 8])
    assert "| [0, 2) | 1 | 0.000 |" in text and "| [2, 8) | 1 | 1.000 |" in text and "**0.500**" in text


@pytest.mark.slow
def test_by_position_script_reads_a_checkpoint_and_prints_the_gates(tmp_path, capsys):
    by_position = load_script("benchmarks/analysis/by_position.py")
    config = str(ROOT / "configs/debug/memory_mqar.yaml")
    ckpt = untrained_checkpoint(config, tmp_path)
    assert by_position.main(["--config", config, "--ckpt_path", ckpt, "--limit", "3",
                             "--buckets", "64,128", "--periods", "4", "--data.init_args.batch_size=2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| all \| \d+ \| \*\*[01]\.\d{3}\*\* \|", out)
    gates = [line for line in out.splitlines() if line.startswith("mean commit gate")]
    assert len(gates) == 2 and all(len(line.split(": ")[1].split()) == 4 for line in gates)  # 2 EMs, 4 periods
    sudoku = str(ROOT / "configs/debug/sudoku.yaml")
    assert by_position.main(["--config", sudoku, "--ckpt_path", ckpt]) == 2
    assert "does not train on a memory task" in capsys.readouterr().err
