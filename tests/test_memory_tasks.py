"""Generated memory benchmarks: determinism, what is scored, task semantics, metric arithmetic."""

import json
import re

import numpy as np
import pytest
import torch

from ember.cli.ablate import markdown, parse_variant
from ember.data_modules.memory_task import MemoryTaskData, TaskExamples
from ember.data_modules.mqar import MQAR, ForgettingMQAR
from ember.data_modules.patterns import ProceduralPatterns
from ember.data_modules.recall import SessionRecall
from ember.errors import EmberConfigError
from ember.metrics import answer_stats
from helpers import ROOT, load_script, mlflow_rows, run_cli


def text(tokens) -> str:
    return bytes(np.asarray(tokens, dtype=np.uint8).tolist()).decode("utf-8", errors="replace")


def test_examples_are_deterministic_per_split_and_index():
    task = SessionRecall(window=16, delays=(1, 4), seq_len=320)
    a, b = TaskExamples(task, "test", 4, seed=3), TaskExamples(task, "test", 4, seed=3)
    assert torch.equal(a[2]["tokens"], b[2]["tokens"])
    assert not torch.equal(a[2]["tokens"], TaskExamples(task, "val", 4, seed=3)[2]["tokens"])
    assert a[0]["tokens"].shape == (321,) and a[0]["loss_mask"].shape == (320,)


def test_recall_scores_exactly_the_answers_and_they_match_the_facts():
    task = SessionRecall(window=32, delays=(2,), people=2, attributes=2, seq_len=400)
    ex = task.sample(np.random.default_rng(0))
    body = text(ex.tokens)
    facts = dict(((n, a), v) for n, a, v in re.findall(r"(\w+ \w+)'s (\w+) is (\w+)\.", body.split("\n")[0]))
    assert len(facts) == 4
    for i in range(4):
        positions = np.nonzero(ex.answer_id == i)[0]
        answer = text(ex.tokens[positions + 1])  # targets are the next tokens
        name, attr = re.findall(r"Q: (\w+ \w+)'s (\w+)\? A: " + answer, body)[0]
        assert facts[(name, attr)] == answer
    assert ex.loss_mask.sum() == sum(len(v) for v in facts.values())
    assert set(ex.group[ex.loss_mask]) == {0}
    question = body.index("Q:")
    assert question - len(body.split("\n")[0]) >= 2 * 32  # the delay separates facts and questions
    assert 0.05 < task.chance() < 0.1


def test_patterns_apply_one_substitution_in_every_repetition():
    task = ProceduralPatterns(window=16, repetitions=3, gap=1, rule="substitution", words=2, seq_len=300)
    ex = task.sample(np.random.default_rng(1))
    mapping = {}
    for k in range(3):
        positions = np.nonzero(ex.answer_id == k)[0]
        assert set(ex.group[positions]) == {k}
        cipher = text(ex.tokens[positions + 1])
        plain = text(ex.tokens[: positions[0] + 1]).rsplit("code: ", 1)[1][:-3]
        assert len(plain) == len(cipher)
        for p, c in zip(plain, cipher):
            assert mapping.setdefault(p, c) == c  # the same rule every time
    assert mapping[" "] == " "


def test_patterns_keep_one_argument_order_per_session():
    task = ProceduralPatterns(window=16, repetitions=4, gap=2, args=3, seq_len=400)
    orders = set()
    for seed in range(6):
        ex = task.sample(np.random.default_rng(seed))
        calls = []
        for k in range(4):
            positions = np.nonzero(ex.answer_id == k)[0]
            assert set(ex.group[positions]) == {k}
            call = text(ex.tokens[positions + 1])  # "city=7, date=4, size=2)"
            asked = text(ex.tokens[: positions[0] + 1]).rsplit("ask ", 1)[1].split("\n")[0].split(": ", 1)[1]
            values = dict(pair.split(" ") for pair in asked.split(", "))
            pairs = [pair.split("=") for pair in call.rstrip(")").split(", ")]
            assert {name: value for name, value in pairs} == values  # every asked value, copied
            calls.append([name for name, _ in pairs])
        assert all(names == calls[0] for names in calls)  # one order for the whole session
        orders.add(tuple(calls[0]))
    assert len(orders) > 1  # sessions differ
    assert task.chance() == pytest.approx(1 / 6)


def test_patterns_length_check_is_a_true_bound():
    with pytest.raises(EmberConfigError):
        ProceduralPatterns(window=16, repetitions=4, gap=1, args=3, seq_len=300)
    task = ProceduralPatterns(window=16, repetitions=4, gap=1, args=3, seq_len=301)  # the longest fits exactly
    for seed in range(300):
        task.sample(np.random.default_rng(seed))  # never "an example needs more tokens"


def test_mqar_follows_the_zoology_layout():
    task = MQAR(vocab_size=128, seq_len=64, num_kv_pairs=4, random_non_queries=False, window=8)
    ex = task.sample(np.random.default_rng(0))
    keys, values = ex.tokens[0:8:2], ex.tokens[1:8:2]
    assert (keys >= 1).all() and (keys < 64).all() and (values >= 64).all() and len(set(keys)) == 4
    queries = np.nonzero(ex.loss_mask)[0]
    assert len(queries) == 4 and ((queries - 8) % 2 == 0).all()
    binding = dict(zip(keys, values))
    for q in queries:
        assert binding[ex.tokens[q]] == ex.tokens[q + 1]  # the target of a query is its value


def test_forgetting_mqar_asks_for_the_latest_value():
    task = ForgettingMQAR(vocab_size=128, seq_len=64, num_kv_pairs=4, num_updates=2, random_non_queries=False)
    ex = task.sample(np.random.default_rng(2))
    latest = {}
    for i in range(0, 12, 2):
        latest[ex.tokens[i]] = ex.tokens[i + 1]
    assert len(latest) == 4  # 2 of the 4 keys were bound twice
    for q in np.nonzero(ex.loss_mask)[0]:
        assert latest[ex.tokens[q]] == ex.tokens[q + 1]


@pytest.mark.parametrize("make", [lambda: SessionRecall(window=64, delays=(8,), seq_len=256),
                                  lambda: ProceduralPatterns(window=64, repetitions=4, gap=2, seq_len=256),
                                  lambda: ProceduralPatterns(rule="reverse"),
                                  lambda: MQAR(seq_len=64, num_kv_pairs=32),
                                  lambda: ForgettingMQAR(num_kv_pairs=4, num_updates=5)])
def test_impossible_settings_name_the_fix(make):
    with pytest.raises(EmberConfigError):
        make()


def test_answer_stats_by_hand():
    correct = torch.tensor([[1, 1, 0, 1, 1, 1], [1, 0, 1, 1, 1, 1]], dtype=torch.bool)
    mask = torch.tensor([[0, 1, 1, 0, 1, 1], [1, 1, 0, 0, 1, 0]], dtype=torch.bool)
    answer_id = torch.tensor([[-1, 0, 0, -1, 1, 1], [0, 0, -1, -1, 1, -1]])
    group = torch.tensor([[-1, 0, 0, -1, 1, 1], [1, 1, -1, -1, 0, -1]])
    stats = answer_stats(correct, mask, answer_id, group, 2)
    # group 0: (ex 0, answer 0) has a wrong byte, (ex 1, answer 1) is right; group 1 likewise
    assert stats["answers"].tolist() == [2.0, 2.0] and stats["right"].tolist() == [1.0, 1.0]
    assert stats["bytes"].tolist() == [3.0, 4.0] and stats["right_bytes"].tolist() == [2.0, 3.0]


def test_data_module_batches_and_bad_sizes():
    dm = MemoryTaskData(MQAR(vocab_size=128, seq_len=64, num_kv_pairs=4), batch_size=3, val_size=5)
    batch = next(iter(dm.val_dataloader()))
    assert batch["tokens"].shape == (3, 65) and batch["loss_mask"].dtype == torch.bool
    with pytest.raises(EmberConfigError):
        MemoryTaskData(MQAR(vocab_size=128, seq_len=64, num_kv_pairs=4), batch_size=0)


def test_ablation_variants_and_table(tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("{}")
    assert parse_variant("base=") == ("base", [])
    assert parse_variant(f"x={overlay},--trainer.max_steps=5") == ("x", ["--config", str(overlay),
                                                                        "--trainer.max_steps", "5"])
    with pytest.raises(EmberConfigError):
        parse_variant("no-equals-sign")
    with pytest.raises(EmberConfigError):
        parse_variant("x=missing.yaml")
    table = markdown([{"variant": "a", "params": 3, "eval/t/acc": 0.5}, {"variant": "b", "eval/t/acc": 0.25}])
    assert "| a | 3 | 0.5000 |" in table and "| b |  | 0.2500 |" in table


def test_ember_ablate_fits_tests_and_tabulates_each_variant(tmp_path):
    config = str(ROOT / "configs/debug/memory_recall.yaml")
    assert run_cli("ablate", "--config", config, "--variant", "full=", "--variant",
                   f"no_memory={ROOT / 'configs/ablate/no_memory.yaml'}", "--out", str(tmp_path),
                   "--set=--trainer.max_steps=2", "--memories-off") == 0
    table = (tmp_path / "ablation.md").read_text()
    header, _, full, full_off, no_memory = table.strip().splitlines()  # no memories, so no second test
    assert "eval/recall/acc/4xW" in header and "state_bytes" in header
    assert full.startswith("| full |") and no_memory.startswith("| no_memory |")
    assert full_off.startswith("| full, memories off at test |")
    (row, _) = json.loads((tmp_path / "ablation.json").read_text())["rows"]
    assert set(row["memories_off"]) == {k for k in row if k.startswith("eval/")}
    assert row["memories_off"]["eval/recall/loss"] != row["eval/recall/loss"]  # the reads were off
    logged = mlflow_rows(tmp_path / "runs", "select value from metrics where key = 'eval/recall/loss'")
    # one value per variant: MLflow keeps the memories-on test only
    assert len(logged) == 2 and (row["eval/recall/loss"],) in logged
    assert (row["memories_off"]["eval/recall/loss"],) not in logged
    plots = sorted(p.name for p in (tmp_path / "runs").rglob("*slot_usage.png") if "artifacts" not in p.parts)
    assert plots == ["slot_usage.png", "test_slot_usage.png"]  # only the variant with memories has them
    assert len(list((tmp_path / "runs" / "artifacts").rglob("plots/*slot_usage.png"))) == 2  # logged to MLflow


def test_ablate_resume_keeps_the_finished_variants_and_fits_the_rest(tmp_path, monkeypatch):
    import ember.cli.ablate as ablate

    fitted = []

    def fake_run_variant(name, base, overlay, out, memories_off=False):
        fitted.append(name)
        return {"variant": name, "params": len(fitted), "eval/t/acc": 0.5}

    monkeypatch.setattr(ablate, "run_variant", fake_run_variant)
    extra = ["--trainer.max_steps", "5"]
    ablate.run_ablation(["base.yaml"], ["a=", "b=--x=1"], str(tmp_path), extra)
    assert fitted == ["a", "b"]
    rows = ablate.run_ablation(["base.yaml"], ["a=", "b=--x=2", "c="], str(tmp_path), extra, resume=True)
    assert fitted == ["a", "b", "b", "c"]  # a kept; b's spec changed, so it is fitted again; c is new
    assert [r["params"] for r in rows] == [1, 3, 4]
    assert json.loads((tmp_path / "ablation.json").read_text())["variants"] == ["a=", "b=--x=2", "c="]
    ablate.run_ablation(["base.yaml"], ["a="], str(tmp_path), ["--trainer.max_steps", "6"], resume=True)
    assert fitted[-1] == "a"  # other overrides: nothing is kept
    ablate.run_ablation(["base.yaml"], [], str(tmp_path), extra)
    ablate.run_ablation(["base.yaml"], [], str(tmp_path), extra, resume=True)
    assert fitted[-1] == "base" and fitted.count("base") == 1  # the base alone resumes too


# ---- benchmarks/analysis/by_position.py ----------------------------------------------------------
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


def test_by_position_script_reads_a_checkpoint_and_prints_the_gates(tmp_path, capsys):
    from ember.cli.runs import build_model

    by_position = load_script("benchmarks/analysis/by_position.py")
    config = str(ROOT / "configs/debug/memory_mqar.yaml")
    torch.save({"state_dict": build_model(config).state_dict()}, tmp_path / "w.ckpt")
    assert by_position.main(["--config", config, "--ckpt_path", str(tmp_path / "w.ckpt"), "--limit", "3",
                             "--buckets", "64,128", "--periods", "4", "--data.init_args.batch_size=2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| all \| \d+ \| \*\*[01]\.\d{3}\*\* \|", out)
    gates = [line for line in out.splitlines() if line.startswith("mean commit gate")]
    assert len(gates) == 2 and all(len(line.split(": ")[1].split()) == 4 for line in gates)  # 2 EMs, 4 periods
    sudoku = str(ROOT / "configs/debug/sudoku.yaml")
    assert by_position.main(["--config", sudoku, "--ckpt_path", str(tmp_path / "w.ckpt")]) == 2
    assert "does not train on a memory task" in capsys.readouterr().err
