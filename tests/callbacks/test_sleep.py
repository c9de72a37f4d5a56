"""SleepConsolidation inside `ember fit`: a sleep changes only the slow weights its consolidator owns, logs sleep/*
and a plot per sleep, resumes exactly across a sleep, and never sleeps without a consolidator."""

from pathlib import Path

import pytest
import torch

from ember.errors import EmberDataError
from ember.plugins.consolidation.replay import ReplayDistillation
from ember.sleep import general_sequences
from helpers import ROOT, fit_args, mlflow_rows, run_cli, run_folder

SLEEP = str(ROOT / "configs/debug/sleep.yaml")
QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1")


@pytest.mark.slow
def test_a_sleep_inside_fit_changes_only_the_weights_its_consolidator_owns(tmp_path, monkeypatch):
    seen = []
    consolidate = ReplayDistillation.consolidate

    def watched(self, model, episodes, general, seed=0):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        out = consolidate(self, model, episodes, general, seed)
        seen.append(({n for n, p in model.named_parameters() if not torch.equal(before[n], p)}, len(episodes)))
        return out

    monkeypatch.setattr(ReplayDistillation, "consolidate", watched)
    owns = "--model.init_args.consolidator.init_args.owns=[backbone.stack.layers.1.*]"
    assert run_cli(*fit_args(tmp_path, "--trainer.max_steps", "3", owns, *QUIET, config=SLEEP)) == 0
    ((changed, episodes),) = seen  # one sleep, at step 3
    assert changed and all(n.startswith("backbone.stack.layers.1.") for n in changed)
    assert not any(".pm." in n for n in changed)  # the layer's procedural memory is the fast system's own
    assert episodes == 8  # the buffer: the last 8 sequences (3 steps of 4)
    keys = {k for (k,) in mlflow_rows(tmp_path, "select distinct key from metrics where key like 'sleep/%'")}
    assert {"sleep/kl_before", "sleep/kl_after", "sleep/anchor"} <= keys
    assert not any("general" in k for k in keys)  # no general text: not measured, so not logged
    assert (run_folder(tmp_path) / "sleep/sleep_1.png").is_file()


@pytest.mark.slow
def test_a_fit_resumed_across_a_sleep_ends_as_the_uninterrupted_one(tmp_path):
    steps = ("--model.init_args.min_lr_ratio", "1", *QUIET)  # constant lr after warm-up: 3 steps are half of 6
    assert run_cli(*fit_args(tmp_path / "whole", "--trainer.max_steps", "6", *steps, config=SLEEP)) == 0
    assert run_cli(*fit_args(tmp_path / "part", "--trainer.max_steps", "3", *steps, config=SLEEP)) == 0
    part = run_folder(tmp_path / "part")
    assert run_cli("fit", "--config", str(part / "config.yaml"), "--ckpt_path", str(part / "checkpoints/last.ckpt"),
                   "--trainer.max_steps", "6") == 0
    ends = [torch.load(run_folder(tmp_path / d) / "checkpoints/last.ckpt", weights_only=False)
            for d in ("whole", "part")]
    for name, weight in ends[0]["state_dict"].items():
        torch.testing.assert_close(ends[1]["state_dict"][name], weight)
    histories = [[v for k, v in e["callbacks"].items() if "SleepConsolidation" in k][0]["history"] for e in ends]
    assert [h["step"] for h in histories[1]] == [3, 6]
    kls = [[h[k] for h in history for k in ("kl_before", "kl_after")] for history in histories]
    assert kls[1] == pytest.approx(kls[0], abs=1e-6)


@pytest.mark.slow
def test_without_a_consolidator_the_callback_never_sleeps(tmp_path, caplog):
    assert run_cli(*fit_args(tmp_path, "--config", str(ROOT / "configs/ablate/no_sleep.yaml"), *QUIET,
                             config=SLEEP)) == 0
    assert mlflow_rows(tmp_path, "select count(*) from metrics where key like 'sleep/%'") == [(0,)]
    assert not (run_folder(tmp_path) / "sleep").exists()
    assert "no-sleep ablation" in caplog.text


def test_general_text_is_drawn_by_seed_and_bad_files_name_the_fix(tmp_path):
    text = tmp_path / "general.txt"
    text.write_bytes(bytes(range(32, 127)) * 4)
    first, again = general_sequences(str(text), 3, 10, seed=1), general_sequences(str(text), 3, 10, seed=1)
    assert all(torch.equal(a, b) and a.numel() == 11 for a, b in zip(first, again))
    with pytest.raises(EmberDataError, match="not a file"):
        general_sequences(str(tmp_path / "missing.txt"), 1, 10, 0)
    with pytest.raises(EmberDataError, match="smaller general_length"):
        general_sequences(str(text), 1, 10_000, 0)
    assert Path(SLEEP).is_file()
