"""The quickstart's tiny twin under Lightning DDP on the CPU: 2 processes, gloo.

Lightning's `ddp` strategy re-runs sys.argv in each child, so the job runs as a subprocess.
"""

import os
import subprocess
import sys

import pytest

from helpers import DEBUG, ROOT, mlflow_rows, run_folder


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    cmd = [sys.executable, "-m", "ember.cli.main", "fit", "--config", DEBUG, "--trainer.strategy", "ddp",
           "--trainer.devices", "2", "--trainer.max_steps", "6", "--trainer.val_check_interval", "3",
           "--trainer.logger.init_args.run_dir", str(tmp_path)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Training finished." in done.stderr
    assert (run_folder(tmp_path) / "checkpoints/last.ckpt").is_file()
    assert mlflow_rows(tmp_path, "select count(*) from runs")[0][0] == 1  # rank 0 alone tracks the run
