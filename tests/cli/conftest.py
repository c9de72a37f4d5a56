"""Runs shared by the tests of the commands that load a trained model (`ember session`, `ember stability`)."""

import pytest

from helpers import ROOT, fit_args, run_cli, run_folder

MEMORY = str(ROOT / "configs/debug/nml_memory.yaml")
PLAIN = str(ROOT / "configs/debug/quickstart.yaml")


@pytest.fixture(scope="package")
def trained_runs(tmp_path_factory):
    out = {}
    for name, config in (("memory", MEMORY), ("plain", PLAIN)):
        run_dir = tmp_path_factory.mktemp(name)
        assert run_cli(*fit_args(run_dir, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
                                 config=config)) == 0
        out[name] = (config, str(run_folder(run_dir) / "checkpoints/last.ckpt"))
    return out
