"""FiniteGuard: the first non-finite training loss or val metric stops training before any checkpoint holds it."""

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from ember.callbacks.finite_guard import FiniteGuard
from ember.errors import NonFiniteLossError


class Toy(LightningModule):
    """A loss that turns NaN in training from step `train_nan`, or in validation from step `val_nan`."""

    def __init__(self, train_nan: int = 10**9, val_nan: int = 10**9):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.train_nan, self.val_nan = train_nan, val_nan

    def training_step(self, batch, batch_idx):
        bad = self.global_step >= self.train_nan
        return (self.w ** 2).sum() * (float("nan") if bad else 1.0)

    def validation_step(self, batch, batch_idx):
        bad = self.global_step >= self.val_nan
        self.log("val/loss", (self.w ** 2).sum() * (float("nan") if bad else 1.0))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.parametrize("where", ["train", "val"])
def test_training_stops_at_the_first_nan_and_no_checkpoint_holds_it(where, tmp_path):
    model = Toy(train_nan=3) if where == "train" else Toy(val_nan=4)
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="val/loss", save_top_k=1, save_last=True, filename="best")
    data = DataLoader(torch.zeros(64, 1), batch_size=1)
    trainer = Trainer(max_steps=20, val_check_interval=2, limit_val_batches=1, callbacks=[FiniteGuard(), ckpt],
                      logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(NonFiniteLossError, match="became nan at step 4.*Last good checkpoint: .*last.ckpt"):
        trainer.fit(model, train_dataloaders=data, val_dataloaders=data)
    assert ckpt.best_model_score is not None and torch.isfinite(ckpt.best_model_score)
    saved = torch.load(tmp_path / "best.ckpt", weights_only=True)
    assert saved["global_step"] == 2  # the validation at step 2, the last before the NaN


def test_finite_runs_pass_untouched():
    data = DataLoader(torch.zeros(8, 1), batch_size=1)
    trainer = Trainer(max_steps=4, val_check_interval=2, limit_val_batches=1, callbacks=[FiniteGuard()],
                      logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(Toy(), train_dataloaders=data, val_dataloaders=data)
    assert trainer.global_step == 4
