"""EmberCheckpoint: last.ckpt is the latest state even when the monitored loss stops improving."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

from ember.callbacks.checkpoint import EmberCheckpoint


class RisingValLoss(LightningModule):
    """A linear model whose logged val/loss is the global step: best at the first validation."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", float(self.global_step))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.slow
def test_last_checkpoint_is_the_latest_step_not_a_copy_of_the_best(tmp_path):
    loader = DataLoader(TensorDataset(torch.randn(64, 2)), batch_size=4)
    checkpoint = EmberCheckpoint(dirpath=tmp_path, monitor="val/loss", mode="min", save_last=True, save_top_k=1,
                                 filename="best")
    trainer = Trainer(max_steps=6, val_check_interval=2, limit_val_batches=1, accelerator="cpu", logger=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[checkpoint])
    trainer.fit(RisingValLoss(), loader, loader)
    best = torch.load(tmp_path / "best.ckpt", weights_only=False)
    last = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert best["global_step"] == 2  # the loss only rose after the first validation
    assert last["global_step"] == 6  # plain ModelCheckpoint (Lightning 2.6) leaves a copy of best here
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt"]
