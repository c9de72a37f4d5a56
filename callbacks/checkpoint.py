"""EmberCheckpoint: Lightning's ModelCheckpoint with a `last.ckpt` that is always the latest state, also when a stop
signal ends training, and checkpoint files that are never half-written."""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable, Optional

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import get_worker_info

from ember.files import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO that writes a local checkpoint to a temporary file beside it and renames it into place
    (ember.files.atomic_path): a kill mid-write leaves the previous file whole. Lightning's own writes a temporary
    file in the system's temp folder and moves it, which is a plain copy when that folder is on another file system.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote or special: Lightning's way
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


class EmberCheckpoint(ModelCheckpoint):
    """ModelCheckpoint (same options) whose `last.ckpt` is written after every validation and when a stop signal
    ends training.

    Lightning 2.6 writes `last.ckpt` only when a top-k checkpoint is saved at the same step. With
    `save_top_k: 1` on a monitored loss, `last.ckpt` is then a copy of the best checkpoint whenever the
    loss did not improve, and a run resumed from it silently starts from an earlier step. Here it is
    the state at the latest validation, as `save_last` promises. Runs validate at their last step
    when `val_check_interval` divides `max_steps`; otherwise last.ckpt is the last validation's state.

    SIGINT (Ctrl+C), SIGTERM and SIGUSR1 (SLURM's preemption warning; unless Lightning's SLURM auto-requeue holds
    it) stop training at the end of the batch (or of the validation) under way, through Lightning's SIGTERM path
    (under DDP, rank 0 passes the signal to the other ranks), and last.ckpt is saved at that step; `stopped_by`
    names the signal (`ember fit` prints how to resume and exits 128 + its number). A second Ctrl+C stops at once
    and saves nothing more.
    Checkpoints are written through AtomicCheckpointIO unless the trainer was given another CheckpointIO.
    """

    stopped_by: Optional[signal.Signals] = None
    _pending = 0  # under data parallelism: the signal this rank received, not yet agreed on with the others
    _stop_after_validation: Optional[Callable[[], None]] = None

    _stage: Optional[str] = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._stage = stage
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """The best-so-far of a resumed fit; nothing for validate/test/predict, which save no checkpoints (Lightning
        would warn on every evaluation that "the dirpath has changed" from the training run's)."""
        if self._stage in (None, "fit"):
            super().load_state_dict(state_dict)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Catch SIGINT, SIGTERM and SIGUSR1 for this fit and pass them on to Lightning's SIGTERM handler, which stops
        the loops between batches (its teardown puts the previous handlers back)."""
        lightning = signal.getsignal(signal.SIGTERM)  # registered by the trainer for this fit
        if not callable(lightning) or threading.current_thread() is not threading.main_thread():
            return
        self.stopped_by, self._pending = None, 0

        def stop(signum, frame):
            if get_worker_info() is not None:  # a DataLoader worker forked from here: the main process ends it
                return
            if self.stopped_by is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl+C: stop now
            self.stopped_by = signal.Signals(signum)
            if _distributed(trainer):  # the ranks agree at the end of the batch (on_train_batch_end); Lightning's
                self._pending = int(signum)  # handler would broadcast from here, out of step with their collectives
                return
            if trainer.validating:  # stopping mid-validation would save a half-validated step: finish it first
                self._stop_after_validation = lambda: lightning(signum, frame)
            else:
                lightning(signum, frame)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        # SIGUSR1, SLURM's warning before preemption (sbatch --signal=USR1@90): the same stop, unless Lightning
        # claimed it (SLURMEnvironment's auto-requeue registers its own handler)
        usr1 = getattr(signal, "SIGUSR1", None)
        if usr1 is not None and signal.getsignal(usr1) in (signal.SIG_DFL, None):
            signal.signal(usr1, stop)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args, **kwargs) -> None:
        """Under data parallelism, every rank learns at the same point whether any rank was signalled (a MAX
        all-reduce of the signal number), so all stop at the end of this batch together; one rank stopping alone
        would leave the others waiting in their next collective."""
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        if not _distributed(trainer):
            return
        signalled = torch.tensor([self._pending], device=trainer.strategy.root_device)
        torch.distributed.all_reduce(signalled, op=torch.distributed.ReduceOp.MAX)
        if signalled.item():
            self.stopped_by = self.stopped_by or signal.Signals(int(signalled.item()))
            trainer._signal_connector.received_sigterm = True  # Lightning's loop raises SIGTERMException on every rank

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        # skipped in sanity checks and fast_dev_run, and when this step's checkpoint (and last) is saved already
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        if self._stop_after_validation is not None:
            stop, self._stop_after_validation = self._stop_after_validation, None
            stop()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """A stop signal ends training between batches (SIGTERMException): save last.ckpt at this step. Any other
        exception (a non-finite loss, a second Ctrl+C in mid-step) leaves the checkpoints as they are."""
        if isinstance(exception, SIGTERMException) and self.save_last and \
                not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def _distributed(trainer: Trainer) -> bool:
    """Several ranks in one process group (DDP, FSDP, several nodes)."""
    return trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()
