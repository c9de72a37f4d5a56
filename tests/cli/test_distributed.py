"""The quickstart's tiny twin under Lightning DDP on the CPU: 2 processes, gloo.

Lightning's `ddp` strategy re-runs sys.argv in each child, so the job runs as a subprocess.
"""

import os
import signal
import subprocess
import sys

import pytest
import torch

from helpers import DEBUG, ROOT, mlflow_rows, run_cli, run_folder, signal_after_first_checkpoint

# a text model whose episodic reads pick 2 of 16 items: the quickstart twin's sharp per-byte store (top-8 of 32,
# an item per byte, open-recall batches) turns float-order differences into other top-k picks, 5e-3 apart after
# 6 steps under Adam, which is not what the FSDP2-vs-DDP comparison is about
SMOOTH = str(ROOT / "configs/debug/nml_memory.yaml")


def _fit_two_processes(run_dir, *strategy: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "ember.cli.main", "fit", "--config", SMOOTH, *strategy, "--trainer.max_steps", "6",
           "--trainer.val_check_interval", "3", "--trainer.logger.init_args.run_dir", str(run_dir)]
    done = subprocess.run(cmd, cwd=run_dir.parent, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ddp") / "runs"
    return run_dir, _fit_two_processes(run_dir, "--trainer.strategy", "ddp", "--trainer.devices", "2")


@pytest.mark.slow
def test_ddp_two_cpu_processes(ddp_run):
    run_dir, done = ddp_run
    assert "Training finished." in done.stderr
    assert (run_folder(run_dir) / "checkpoints/last.ckpt").is_file()
    assert mlflow_rows(run_dir, "select count(*) from runs")[0][0] == 1  # rank 0 alone tracks the run


@pytest.mark.slow
def test_fsdp2_on_the_cpu_trains_the_weights_ddp_does(ddp_run, tmp_path):
    """configs/cloud/fsdp2_cpu.yaml: ModelParallelStrategy with fully_shard on each layer and slot (gloo). The
    same updates as DDP up to the order of float sums; whole checkpoints that `ember test` reads in one process."""
    run_dir = tmp_path / "runs"
    _fit_two_processes(run_dir, "--config", str(ROOT / "configs/cloud/fsdp2_cpu.yaml"))
    sharded, reference = (_weights(run_folder(d) / "checkpoints/last.ckpt") for d in (run_dir, ddp_run[0]))
    assert sharded.keys() == reference.keys()
    for name, value in reference.items():
        torch.testing.assert_close(sharded[name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert (run_folder(run_dir) / "slot_usage.png").is_file()  # traced on both ranks (each forward gathers)
    folder = run_folder(run_dir)
    assert run_cli("test", "--config", str(folder / "config.yaml"), "--ckpt_path",
                   str(folder / "checkpoints/best.ckpt"), "--trainer.devices", "1", "--trainer.strategy", "auto") == 0


def _ddp_fit(run_dir, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ember.cli.main", "fit", "--config", DEBUG, "--trainer.strategy", "ddp",
            "--trainer.devices", "2", "--trainer.val_check_interval", "3", "--trainer.enable_progress_bar", "false",
            "--trainer.logger.init_args.run_dir", str(run_dir), *extra]


def _weights(ckpt) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
def test_a_preempted_ddp_fit_resumes_as_if_never_stopped(tmp_path):
    """SIGUSR1 (SLURM's preemption warning) to a 2-process DDP fit: last.ckpt at the step reached, exit 138; the
    resumed fit ends where an uninterrupted one does (optimizer, schedule, data position per rank restored)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "OMP_NUM_THREADS": "1"}
    steps = "12"
    whole = subprocess.run(_ddp_fit(tmp_path / "whole", "--trainer.max_steps", steps), cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-3000:]

    runs = tmp_path / "stopped"  # SIGUSR1 once the first validation (step 3) is done
    code, text = signal_after_first_checkpoint(_ddp_fit(runs, "--trainer.max_steps", steps), runs,
                                               tmp_path / "stopped.log", signal.SIGUSR1, timeout=240, cwd=tmp_path,
                                               env=env)
    assert code == 128 + signal.SIGUSR1 and "Traceback" not in text, text[-3000:]
    folder = run_folder(runs)
    stopped_at = torch.load(folder / "checkpoints/last.ckpt", weights_only=False)["global_step"]
    assert 3 <= stopped_at < int(steps), text[-2000:]

    resumed = subprocess.run(_ddp_fit(runs, "--trainer.max_steps", steps, "--ckpt_path",
                                      str(folder / "checkpoints/last.ckpt")),
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert run_folder(runs) == folder and mlflow_rows(runs, "select status from runs") == [("FINISHED",)]
    mine, reference = _weights(folder / "checkpoints/last.ckpt"), _weights(run_folder(tmp_path / "whole") /
                                                                           "checkpoints/last.ckpt")
    assert torch.load(folder / "checkpoints/last.ckpt", weights_only=False)["global_step"] == int(steps)
    for name, value in reference.items():
        torch.testing.assert_close(mine[name], value, rtol=1e-5, atol=1e-6, msg=name)
