"""`ember fit --ckpt_path <run>/checkpoints/last.ckpt` continues the run as if never stopped (same folder and MLflow
run, best-so-far, data position), and SIGINT/SIGTERM stop a fit with last.ckpt saved and the resume command."""

import os
import re
import signal
import sys

import pytest
import torch

from ember.cli import main as cli_main
from helpers import fit_args, mlflow_rows, run_cli, run_folder, signal_after_first_checkpoint

# The cosine decay spans max_steps: a constant rate after warm-up makes a 6-step fit the first half of a 12-step one.
STEPS = ("--trainer.max_steps", "12", "--trainer.val_check_interval", "3", "--trainer.log_every_n_steps", "1",
         "--trainer.enable_progress_bar", "false", "--model.init_args.min_lr_ratio", "1")


def train_losses(run_dir, run_id: str) -> dict[int, float]:
    return dict(mlflow_rows(run_dir, f"select step, value from metrics where key='train/loss' and run_uuid='{run_id}'"))


def checkpoint_state(ckpt: dict) -> dict:
    """The EmberCheckpoint callback's saved state (best_model_path, best_model_score, ...)."""
    (state,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("EmberCheckpoint")]
    return state


@pytest.mark.slow
def test_a_resumed_fit_continues_its_run_as_if_never_stopped(tmp_path, caplog):
    assert run_cli(*fit_args(tmp_path, *STEPS)) == 0
    whole = run_folder(tmp_path)
    assert run_cli(*fit_args(tmp_path, *STEPS, "--trainer.max_steps", "6")) == 0
    (folder,) = [p for p in whole.parent.iterdir() if p != whole and (p / "checkpoints").is_dir()]
    caplog.clear()
    assert run_cli("fit", "--config", str(folder / "config.yaml"), "--ckpt_path",
                   str(folder / "checkpoints/last.ckpt"), "--trainer.max_steps", "12") == 0

    assert {p for p in whole.parent.iterdir() if (p / "checkpoints").is_dir()} == {whole, folder}  # no new run
    assert mlflow_rows(tmp_path, "select count(*) from runs") == [(2,)]
    parts, uninterrupted = train_losses(tmp_path, folder.name), train_losses(tmp_path, whole.name)
    assert sorted(parts) == list(range(12)) and parts == pytest.approx(uninterrupted, abs=1e-5)  # the same batches
    ends = [torch.load(f / "checkpoints/last.ckpt", weights_only=False) for f in (whole, folder)]
    assert ends[0]["global_step"] == ends[1]["global_step"] == 12
    for name, weight in ends[0]["state_dict"].items():
        torch.testing.assert_close(ends[1]["state_dict"][name], weight)
    val = [v for (v,) in mlflow_rows(tmp_path, f"select value from metrics where key='val/loss' and "
                                               f"run_uuid='{folder.name}'")]
    best = checkpoint_state(ends[1])  # chosen among the validations of both parts
    assert len(val) == 4 and float(best["best_model_score"]) == pytest.approx(min(val))
    assert best["best_model_path"] == str(folder / "checkpoints/best.ckpt")
    assert f"checkpoint: {folder / 'checkpoints/best.ckpt'}" in caplog.text
    assert "ckpt_path: null" in (folder / "config.yaml").read_text()  # a later fit of it starts fresh
    (curves,) = [v for k, v in ends[1]["callbacks"].items() if "LearningCurves" in k]
    assert [step for step, _ in curves["val"]] == [3, 6, 9, 12]  # the picture spans both parts


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1], ids=lambda s: s.name)
def test_a_stop_signal_saves_last_and_says_how_to_resume(sig, tmp_path, caplog):
    argv = fit_args(tmp_path / "runs", "--trainer.max_steps", "100000", "--trainer.val_check_interval", "5",
                    "--trainer.enable_progress_bar", "false")
    code, text = signal_after_first_checkpoint([sys.executable, "-m", "ember.cli.main", *argv], tmp_path / "runs",
                                               tmp_path / "fit.log", sig, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert code == 128 + sig and "Traceback" not in text, text[-3000:]
    said = re.search(rf"{sig.name} stopped `ember fit` at step (\d+); last checkpoint (\S+)\. "
                     r"Resume: ember fit --config (\S+) --ckpt_path (\S+)\n", text)
    assert said, text[-3000:]
    folder = run_folder(tmp_path / "runs")
    step, resume = int(said[1]), ["fit", "--config", said[3], "--ckpt_path", said[4]]
    assert said[2] == said[4] == str(folder / "checkpoints/last.ckpt") and said[3] == str(folder / "config.yaml")
    assert torch.load(said[4], weights_only=False)["global_step"] == step > 5  # saved at the step reached
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]  # no temp file
    assert mlflow_rows(tmp_path / "runs", "select status from runs") == [("KILLED",)]
    if sig == signal.SIGINT:  # the printed command resumes the same run
        assert run_cli(*resume, "--trainer.max_steps", str(step + 2)) == 0
        assert run_folder(tmp_path / "runs") == folder
        assert mlflow_rows(tmp_path / "runs", "select status from runs") == [("FINISHED",)]


def test_ctrl_c_outside_training_exits_130_without_a_traceback(monkeypatch, caplog):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "dispatch", interrupted)  # Ctrl+C while importing, parsing, building
    assert cli_main.main(["fit", "--config", "x.yaml"]) == 130
    assert "interrupted (SIGINT)" in caplog.text
