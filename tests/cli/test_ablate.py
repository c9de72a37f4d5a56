"""`ember ablate`: variants and their table, a resume, and real ablations on a memory task and on puzzles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ember.cli.ablate import markdown, parse_variant
from ember.errors import EmberConfigError, EmberDataError
from helpers import ROOT, mlflow_rows, run_cli


def test_ablation_variants_and_table(tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("{}")
    assert parse_variant("base=") == ("base", [])
    assert parse_variant(f"x={overlay},--trainer.max_steps=5") == ("x", ["--config", str(overlay),
                                                                        "--trainer.max_steps", "5"])
    with pytest.raises(EmberConfigError, match="write NAME=OVERLAY"):
        parse_variant("no-equals-sign")
    with pytest.raises(EmberConfigError, match="overlay missing.yaml is not a file"):
        parse_variant("x=missing.yaml")
    table = markdown([{"variant": "a", "params": 3, "eval/t/acc": 0.5}, {"variant": "b", "eval/t/acc": 0.25}])
    assert "| a | 3 | 0.5000 |" in table and "| b |  | 0.2500 |" in table


@pytest.mark.slow
def test_ember_ablate_fits_tests_and_tabulates_each_variant(tmp_path):
    config = str(ROOT / "configs/debug/memory_recall.yaml")
    assert run_cli("ablate", "--config", config, "--variant", "full=", "--variant",
                   f"no_memory={ROOT / 'configs/ablate/no_memory.yaml'}", "--out", str(tmp_path),
                   "--set=--trainer.max_steps=2", "--memories_off") == 0
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
    before = (tmp_path / "ablation.json").read_text()
    with pytest.raises(EmberConfigError, match="already holds an ablation table: pass --resume"):
        ablate.run_ablation(["base.yaml"], [], str(tmp_path), extra)  # would drop the finished rows
    assert (tmp_path / "ablation.json").read_text() == before
    fresh = str(tmp_path / "fresh")
    ablate.run_ablation(["base.yaml"], [], fresh, extra)
    ablate.run_ablation(["base.yaml"], [], fresh, extra, resume=True)
    assert fitted[-1] == "base" and fitted.count("base") == 1  # the base alone resumes too
    (tmp_path / "ablation.json").write_text('{"rows": [{"varia')
    with pytest.raises(EmberDataError, match="is not a readable ablation table"):
        ablate.run_ablation(["base.yaml"], ["a="], str(tmp_path), extra, resume=True)
    with pytest.raises(EmberConfigError, match="is a file"):
        ablate.run_ablation(["base.yaml"], ["a="], str(tmp_path / "ablation.md"), extra)


@pytest.mark.slow
def test_ember_ablate_runs_the_trm_ablations_on_puzzles(tmp_path):
    from helpers import ROOT, mlflow_rows, run_cli

    config, ablate = str(ROOT / "configs/debug/sudoku.yaml"), ROOT / "configs/ablate"
    variants = [f"{name}={ablate / file}" for name, file in [("single_pass", "trm_single_pass.yaml"),
                ("one_step", "trm_one_step.yaml"), ("grad1", "trm_1step_gradient.yaml")]]
    assert run_cli("ablate", "--config", config, "--variant", "trm=", *[a for v in variants for a in ("--variant", v)],
                   "--out", str(tmp_path), "--set=--trainer.max_steps=2", "--set=--trainer.val_check_interval=2") == 0
    rows = {r["variant"]: r for r in json.loads((tmp_path / "ablation.json").read_text())["rows"]}
    assert list(rows) == ["trm", "single_pass", "one_step", "grad1"]
    assert all(r["state_bytes"] is None and "test/exact_acc" in r for r in rows.values())  # no stream state
    assert rows["single_pass"]["test/steps"] == 1.0 and rows["trm"]["test/steps"] == 3.0  # n_sup of each variant
    trm = Path(rows["trm"]["checkpoint"]).parent.parent  # the run folder
    assert run_cli("test", "--config", str(trm / "config.yaml"), "--ckpt_path", rows["trm"]["checkpoint"],
                   "--trainer.logger.init_args.run_dir", str(tmp_path / "test")) == 0
    (loss,) = mlflow_rows(tmp_path / "test", "select value from metrics where key='test/loss'")[0]
    assert loss == pytest.approx(rows["trm"]["test/loss"], rel=1e-5)  # the EMA weights, as `ember test` scores them


@pytest.mark.slow
def test_ablate_tabulates_a_config_with_several_test_loaders(tmp_path):
    """The quickstart tests text and a benchmark (two test loaders, one metrics dict each): both reach the table."""
    config = str(ROOT / "configs/debug/quickstart.yaml")
    assert run_cli("ablate", "--config", config, "--variant", "full=", "--out", str(tmp_path),
                   "--set=--trainer.max_steps=2", "--set=--data.init_args.benchmark_size=2") == 0
    (row,) = json.loads((tmp_path / "ablation.json").read_text())["rows"]
    assert "test/bpb" in row and "eval/open_recall/acc/4xW" in row
    assert not any("memories_off" in k for k in row)  # ember ablate's own --memories_off row does that
