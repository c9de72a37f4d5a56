"""benchmarks/analysis/retrieval.py: where each answer byte's item was written, and the rank of its key."""

import re

import pytest
import torch

from helpers import ROOT, load_script, untrained_checkpoint


def test_sources_are_the_first_occurrence_of_the_answer_at_the_same_offsets():
    retrieval = load_script("benchmarks/analysis/retrieval.py")
    tokens = [7, 1, 2, 3, 9, 9, 1, 2, 3, 0]  # the value 1 2 3 at 1..3, answered at 6..8 (targets of 5..7)
    assert retrieval.sources(tokens, [5, 6, 7]) == [1, 2, 3]


def test_rank_counts_the_earlier_keys_closer_to_the_query_and_ignores_later_ones():
    retrieval = load_script("benchmarks/analysis/retrieval.py")
    k = torch.eye(4)
    q = torch.tensor([[0.0, 0.6, 0.8, 0.0]] * 4)  # closest to key 2, then key 1
    assert retrieval.ranks(q, k, 3, 2) == 0 and retrieval.ranks(q, k, 3, 1) == 1 and retrieval.ranks(q, k, 3, 0) == 2
    assert retrieval.ranks(q, k, 1, 1) == 0  # key 2 is written after query 1: not a rival


@pytest.mark.slow
def test_retrieval_script_ranks_every_answer_byte_of_each_memory(tmp_path, capsys):
    retrieval = load_script("benchmarks/analysis/retrieval.py")
    config = str(ROOT / "configs/debug/memory_open_recall.yaml")
    ckpt = untrained_checkpoint(config, tmp_path)
    assert retrieval.main(["--config", config, "--ckpt_path", ckpt, "--limit", "2",
                           "--data.init_args.batch_size=2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(re.match(r"EM [12], (first|rest) bytes: median rank \d+", line) for line in lines)
    assert retrieval.main(["--config", str(ROOT / "configs/debug/sudoku.yaml"), "--ckpt_path", ckpt]) == 2


def test_answer_bytes_finds_the_attribute_and_tallies_by_place():
    script = load_script("benchmarks/analysis/answer_bytes.py")
    text = list(b"Q: Ada Lo's phone? A: 12\n")
    mask = [False] * len(text)
    for t in (21, 22):  # positions 21, 22 predict "1", "2"
        mask[t] = True
    assert script.answers(text, mask, [0] * 21 + [3, 3] + [0] * 2) == [("phone", [21, 22])]
    by_place, by_attr = script.tally([("phone", [False, True, True]), ("city", [True, True])], places=2)
    assert by_place == {0: [False, True], 1: [True, True, True]}  # place 2 and later pooled
    assert by_attr == {"phone": [[False, True, True]], "city": [[True, True]]}


@pytest.mark.slow
def test_answer_bytes_script_reports_places_and_attributes(tmp_path, capsys):
    script = load_script("benchmarks/analysis/answer_bytes.py")
    config = str(ROOT / "configs/debug/memory_open_recall.yaml")
    ckpt = untrained_checkpoint(config, tmp_path)
    assert script.main(["--config", config, "--ckpt_path", ckpt, "--limit", "2", "--places", "3"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"byte accuracy by place in the answer: 1: [0-9.]+, 2: [0-9.]+, 3\+: [0-9.]+", out)
    assert re.search(r"(city|phone|code|password|motto): \d+ answers, acc [0-9.]+", out)
