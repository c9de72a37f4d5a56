"""LearningCurves redraws its PNG at every validation, so a run stopped between validations keeps its last picture."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ember.callbacks.learning_curves import LearningCurves


@pytest.mark.slow
def test_each_validation_redraws_the_picture(tmp_path):
    curves = LearningCurves()
    trainer = SimpleNamespace(loggers=[], default_root_dir=str(tmp_path), sanity_checking=False, datamodule=None,
                              callback_metrics={"val/bpb": torch.tensor(5.0)}, global_step=10)
    module = nn.Linear(2, 2)
    curves.on_validation_end(trainer, module)
    picture = tmp_path / "learning_curves.png"
    first = picture.read_bytes()
    trainer.global_step, trainer.callback_metrics = 20, {"val/bpb": torch.tensor(4.0)}
    curves.on_validation_end(trainer, module)
    assert curves.val == [(10, 5.0), (20, 4.0)] and picture.read_bytes() != first  # no fit end needed


def test_sanity_check_validation_draws_nothing(tmp_path):
    curves = LearningCurves()
    trainer = SimpleNamespace(loggers=[], default_root_dir=str(tmp_path), sanity_checking=True, datamodule=None,
                              callback_metrics={"val/bpb": torch.tensor(5.0)}, global_step=0)
    curves.on_validation_end(trainer, nn.Linear(2, 2))
    assert curves.val == [] and not list(tmp_path.iterdir())
