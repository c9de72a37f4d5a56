"""Shared test setup: CPU, deterministic, MLflow pointed at a temporary directory.

Where a test goes: the test tree mirrors the package (tests/test_tests_layout.py checks it).

- tests/ops/, tests/cli/, tests/bench/ (and any deeper folder, e.g. tests/ops/attention/): ember/ops/, ember/cli/,
  ember/bench/.
- tests/plugins/<kind>/: plugins/<kind>/ (backbone, memory, neuromod, reasoning, sensory, consolidation).
- tests/data_modules/, tests/callbacks/: data_modules/, callbacks/.
- the top level (no tests/core/): the core modules ember/*.py (test_model.py, test_registry.py, test_tracking.py,
  ...) and the checks of the repository as a whole (test_layout.py, test_configs.py, test_tests_layout.py).

A test file is named after the module it tests (test_<module>.py, or test_<module>_<aspect>.py when one file would
pass ~300 lines); a test of a script under benchmarks/ goes beside the module whose output the script reads.
Basenames are unique across the tree: pytest's default (prepend) import mode imports a test file by its basename.
Shared plain helpers live in tests/helpers.py (`import helpers` works from every folder: pyproject's
`pythonpath = ["tests"]`); shared fixtures in the conftest.py of the folder that shares them.

`@pytest.mark.slow`: a test that trains (Trainer.fit, `ember fit`/`ablate` in-process or in a subprocess, or uses a
fixture that does) or takes over ~1 s on a 2-core CPU. `make test-fast` runs the rest (-m "not slow").
"""

import logging
import os

import pytest
import torch

# Hermetic against the user's MLflow settings (MLFLOW_TRACKING_URI=http://... or sqlite:///elsewhere.db, an
# MLFLOW_RUN_ID or MLFLOW_EXPERIMENT_NAME left in the shell): removed before ember.tracking reads them at import.
for _name in [n for n in os.environ if n.startswith("MLFLOW_")]:
    del os.environ[_name]
os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"


@pytest.fixture(autouse=True)
def _seed_and_isolate(monkeypatch, tmp_path):
    torch.manual_seed(0)
    # not monkeypatch.delenv: its undo would put back a value an earlier in-process run leaked
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    # the CLI's "ember" logger writes to stderr and does not propagate; let caplog see it
    from ember.cli.main import setup_logging as _setup_logging

    _setup_logging()
    monkeypatch.setattr(logging.getLogger("ember"), "propagate", True)
    yield
    # mlflow.set_tracking_uri() (a test's in-process run) writes MLFLOW_TRACKING_URI into os.environ: gone after
    # the test, so a later module fixture's subprocess does not log into this test's store
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
