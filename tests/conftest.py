"""Shared test setup: CPU, deterministic, MLflow pointed at a temporary directory."""

import logging
import os

import pytest
import torch

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture(autouse=True)
def _seed_and_isolate(monkeypatch, tmp_path):
    torch.manual_seed(0)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # the CLI's "ember" logger writes to stderr and does not propagate; let caplog see it
    from ember.cli.main import setup_logging as _setup_logging

    _setup_logging()
    monkeypatch.setattr(logging.getLogger("ember"), "propagate", True)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
