"""EmberCheckpoint: last.ckpt is the latest state even when the monitored loss stops improving, and when a stop
signal ends training; checkpoint files are never half-written."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, TensorDataset

from ember.callbacks.checkpoint import AtomicCheckpointIO, EmberCheckpoint


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


class SignalAt(Callback):
    """Sends the process `signals` at training step `step` (or in that step's validation, with `in_validation`)."""

    def __init__(self, step: int, signals: list[signal.Signals], in_validation: bool = False):
        self.step, self.signals, self.in_validation = step, signals, in_validation

    def _send(self, trainer):
        if trainer.global_step == self.step and self.signals:
            for sig in self.signals:
                os.kill(os.getpid(), sig)
            self.signals = []

    def on_train_batch_end(self, trainer, *args):
        if not self.in_validation:
            self._send(trainer)

    def on_validation_batch_end(self, trainer, *args):
        if self.in_validation and not trainer.sanity_checking:
            self._send(trainer)


def fit_until_signalled(tmp_path, signaller: SignalAt) -> EmberCheckpoint:
    loader = DataLoader(TensorDataset(torch.randn(64, 2)), batch_size=4)
    checkpoint = EmberCheckpoint(dirpath=tmp_path, monitor="val/loss", save_last=True, filename="best")
    trainer = Trainer(max_steps=100, val_check_interval=4, limit_val_batches=2, accelerator="cpu", logger=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[checkpoint, signaller])
    with pytest.raises(SIGTERMException):
        trainer.fit(RisingValLoss(), loader, loader)
    return checkpoint


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1], ids=lambda s: s.name)
def test_a_stop_signal_ends_training_between_batches_with_last_saved_at_that_step(sig, tmp_path):
    checkpoint = fit_until_signalled(tmp_path, SignalAt(6, [sig]))
    assert checkpoint.stopped_by == sig
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 6
    assert torch.load(tmp_path / "best.ckpt", weights_only=False)["global_step"] == 4  # best stays the best
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are put back
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


@pytest.mark.slow
def test_a_signal_in_validation_lets_it_finish_and_saves_that_step(tmp_path):
    fit_until_signalled(tmp_path, SignalAt(4, [signal.SIGTERM], in_validation=True))
    last = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert last["global_step"] == 4 and last["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"][
        "current"]["completed"] == 2  # both validation batches ran before the stop


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_and_saves_nothing_more(tmp_path):
    loader = DataLoader(TensorDataset(torch.randn(64, 2)), batch_size=4)
    checkpoint = EmberCheckpoint(dirpath=tmp_path, monitor="val/loss", save_last=True, filename="best")
    trainer = Trainer(max_steps=100, val_check_interval=4, limit_val_batches=2, accelerator="cpu", logger=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[checkpoint, SignalAt(6, [signal.SIGINT, signal.SIGINT])])
    with pytest.raises(SystemExit):  # Lightning's KeyboardInterrupt path
        trainer.fit(RisingValLoss(), loader, loader)
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 4  # the last validation's


@pytest.mark.slow
def test_checkpoints_are_written_beside_their_file_and_renamed_into_place(tmp_path, monkeypatch):
    """A rename within a folder is atomic. Lightning's own writes a temporary file in the system's temp folder and
    moves it, a plain copy when that is another file system: a kill mid-copy left a half-written last.ckpt."""
    renames, replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renames.append((Path(src).parent, Path(dst))),
                                                         replace(src, dst))[1])
    loader = DataLoader(TensorDataset(torch.randn(16, 2)), batch_size=4)
    checkpoint = EmberCheckpoint(dirpath=tmp_path, monitor="val/loss", save_last=True, filename="best")
    Trainer(max_steps=4, val_check_interval=2, limit_val_batches=1, accelerator="cpu", logger=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[checkpoint]).fit(RisingValLoss(), loader,
                                                                                               loader)
    assert {dst.name for _, dst in renames} == {"best.ckpt", "last.ckpt"}
    assert all(folder == dst.parent for folder, dst in renames)
    io = AtomicCheckpointIO()
    with pytest.raises(Exception):  # noqa: B017  (whatever torch.save raises for a value it cannot pickle)
        io.save_checkpoint({"global_step": 9, "bad": lambda: None}, tmp_path / "last.ckpt")
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 4  # the previous one, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt"]  # no temporary file left


def test_evaluations_leave_the_training_runs_checkpoint_state_alone(tmp_path, recwarn):
    """validate/test/predict save no checkpoints: restoring the training run's best-so-far there only warned that
    "the dirpath has changed"."""
    state = {"dirpath": str(tmp_path / "train"), "best_model_path": "train/best.ckpt", "best_model_score": 1.0,
             "kth_best_model_path": "", "kth_value": 1.0, "last_model_path": "", "best_k_models": {}}
    evaluating = EmberCheckpoint(dirpath=str(tmp_path / "test"))
    evaluating._stage = "test"
    evaluating.load_state_dict(dict(state))
    assert evaluating.best_model_path == "" and not [w for w in recwarn if "dirpath" in str(w.message)]
    fitting = EmberCheckpoint(dirpath=str(tmp_path / "train"))
    fitting._stage = "fit"
    fitting.load_state_dict(dict(state))
    assert fitting.best_model_path == "train/best.ckpt"  # a resumed fit keeps its best-so-far
