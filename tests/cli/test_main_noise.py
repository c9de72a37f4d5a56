"""Messages that tell the user nothing are silenced at their source (ember.cli.main.quiet_known_noise), and only
those: other warnings and Lightning's own info lines still show."""

import logging
import warnings

import pytest
from lightning.pytorch import Trainer
from lightning.pytorch.utilities._pytree import _tree_flatten

from ember.cli.main import quiet_known_noise


@pytest.fixture
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        quiet_known_noise()
        yield


def test_lightning_pytree_deprecation_is_silenced_and_others_are_not(quiet):
    with warnings.catch_warnings(record=True) as seen:
        _tree_flatten(1.0)  # Lightning 2.6 builds torch's deprecated LeafSpec here
        warnings.warn("a warning the user should see", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["a warning the user should see"]


def test_litlogger_tip_is_dropped_and_other_info_kept(quiet, caplog):
    with caplog.at_level(logging.INFO):
        Trainer(logger=True, enable_checkpointing=False, enable_progress_bar=False, default_root_dir=".")
    assert "GPU available" in caplog.text and "Tip" not in caplog.text
