"""`ember fit|validate|test|predict`: LightningCLI with Ember's defaults (MLflow tracking, checkpoints,
learning curves, slot-usage plots) and a closing summary.

    ember fit --config configs/quickstart.yaml [--config configs/ablate/x.yaml] [--trainer.max_steps 100]
    ember test --config runs/<exp>/<run>/config.yaml --ckpt_path runs/<exp>/<run>/checkpoints/best.ckpt
"""

from __future__ import annotations

import logging
import os
import pydoc
import signal
import sys

from jsonargparse import DefaultHelpFormatter, Namespace, lazy_instance
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ember import registry
from ember.callbacks.checkpoint import EmberCheckpoint
from ember.callbacks.finite_guard import FiniteGuard
from ember.callbacks.learning_curves import LearningCurves
from ember.callbacks.memory_usage import MemoryUsage
from ember.callbacks.progress import EmberProgressBar
from ember.checkpoint_source import artifact_run_id, artifact_store, resolve_checkpoint
from ember.cli.checks import ShortErrorParser, check_config_names
from ember.errors import EmberConfigError, TrainingStopped
from ember.files import load_checkpoint
from ember.model import EmberModel  # noqa: F401  (imported so `class_path: EmberModel` resolves)
from ember.optim import OptimizerChoice
from ember.tracking import EmberMLFlowLogger, MLflowSaveConfig

log = logging.getLogger("ember")
DESCRIPTION = """Ember: train, evaluate and ablate composite sequence models assembled from plugins.

  ember fit --config configs/quickstart.yaml       train (add --config overlays to ablate)
  ember validate|test|predict --config C --ckpt_path K
  ember plugins [show NAME]                        list plugins by kind / show one's options
  ember data prepare text --input F --out DIR      write text as webdataset shards
  ember data prepare audio-prosody --out DIR       synthesize prosody audio as webdataset shards
  ember session --config C --ckpt_path K --memory_state F --input TEXT|-
                                                   stream text with memories writing, weights frozen
  ember ablate --config C --variant NAME=OVERLAY ... fit + test each variant, write one table
  ember stability --config C --ckpt_path K [--sessions N]
                                                   memory-OFF bits/byte and slow weights before/after adaptation
  ember bench --config C [C ...] [--contexts 2048,8192,16384]
                                                   training/decode tokens/s, peak memory, state bytes vs context
  ember --version

Runs are tracked in MLflow (sqlite under runs/ unless MLFLOW_TRACKING_URI is set)."""


class RawDescriptionHelpFormatter(DefaultHelpFormatter):
    """Keeps the line breaks of the description."""

    def _fill_text(self, text, width, indent):
        return "".join(indent + line for line in text.splitlines(keepends=True))


class EmberCLI(LightningCLI):
    """LightningCLI with Ember's defaults: MLflow tracking, checkpoints, and a closing summary.

    `fit --ckpt_path <run>/checkpoints/last.ckpt` continues that run: the same folder and MLflow run, the checkpoint
    callback's best-so-far, the data where it stopped. SIGINT or SIGTERM ends a fit with last.ckpt saved at the
    step reached and one line that says how to resume (TrainingStopped, exit status 130 or 143)."""

    def __init__(self, args=None, run: bool = True):
        try:
            super().__init__(
                LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                save_config_callback=MLflowSaveConfig,
                save_config_kwargs={"overwrite": True, "command": sys.argv[1:] if args is None else list(args)},
                trainer_defaults={"logger": lazy_instance(EmberMLFlowLogger), "default_root_dir": "runs",
                                  "log_every_n_steps": 10,
                                  "callbacks": [lazy_instance(FiniteGuard), lazy_instance(LearningCurves),
                                                lazy_instance(MemoryUsage)]},
                auto_configure_optimizers=False, args=args, run=run,
                parser_kwargs={"description": DESCRIPTION, "formatter_class": RawDescriptionHelpFormatter},
                parser_class=ShortErrorParser,
            )
        except SIGTERMException:  # Lightning's stop between batches, a SystemExit without a status
            raise self._stopped() from None

    def parse_arguments(self, parser, args):
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        self._asked_model = _leaves(self.config[sub].get("model")) if sub else {}

    def _parse_ckpt_path(self):
        """LightningCLI reads --ckpt_path's hyper-parameters here. A run folder or a runs:/ URI becomes its local file
        first (ember.checkpoint_source: last.ckpt for a fit, best.ckpt otherwise), which replaces the config's value,
        so Lightning reads a file; a missing, truncated or unsafe file is one message, not the unpickler's
        traceback."""
        sub = self.config.get("subcommand")
        self._ckpt_source = self.config[sub].get("ckpt_path") if sub else None
        if self._ckpt_source:
            trainer = self.config[sub].get("trainer") or Namespace()
            path = resolve_checkpoint(str(self._ckpt_source), "resume" if sub == "fit" else "init",
                                      lambda: artifact_store(*_logger_store(trainer)), "--ckpt_path")
            self.config[sub]["ckpt_path"] = str(path)
            load_checkpoint(path)
        super()._parse_ckpt_path()

    def before_instantiate_classes(self):
        """Say which model settings a --ckpt_path replaced: LightningCLI restores the checkpoint's hyper-parameters
        over the config and the command line, silently."""
        sub = self.config.get("subcommand")
        if sub:
            _run_dir_follows_root(self.config[sub]["trainer"])
        if not sub or not self.config[sub].get("ckpt_path"):
            self._refuse_untrained(sub)
            return
        now = _leaves(self.config[sub].get("model"))
        replaced = [f"model.{key}: {asked!r} -> {now[key]!r}" for key, asked in self._asked_model.items()
                    if key in now and now[key] != asked]
        if replaced:
            log.warning("--ckpt_path %s restores the hyper-parameters saved in it over the config and command line "
                        "(LightningCLI's rule), so these settings do not apply:\n  %s\nTo train under other values, "
                        "start a new run without --ckpt_path.", self.config[sub]["ckpt_path"], "\n  ".join(replaced))

    def _refuse_untrained(self, sub: str | None):
        """validate, test and predict without a checkpoint would score (and log) an untrained model."""
        if sub in ("validate", "test", "predict") and not _leaves(self.config[sub].get("model")).get(
                "init_args.init_from"):
            raise EmberConfigError(f"ember {sub} without --ckpt_path would {sub} an untrained model (random weights): "
                                   f"give the run's checkpoint, ember {sub} --config <run>/config.yaml --ckpt_path "
                                   "<run>/checkpoints/best.ckpt (or set model.init_args.init_from)")

    def instantiate_classes(self):
        """Hand --optimizer / --lr_scheduler to the module (ember.optim.configure reads module.optimizer_choice), and
        refuse the trainer options that automatic optimization alone supports before a module that steps itself."""
        super().instantiate_classes()
        sub = self.subcommand
        chosen = {key: self.config_init[sub].get(key) for key in ("optimizer", "lr_scheduler")} if sub else {}
        self.model.optimizer_choice = OptimizerChoice(**{key: _as_dict(value) for key, value in chosen.items()})
        if sub == "fit" and not self.model.automatic_optimization:
            _refuse_automatic_only(type(self.model).__name__, self.trainer)

    def _instantiate_trainer(self, config: dict, callbacks: list):
        """Lightning's trainer, with EmberProgressBar (no v_num) as its bar unless the bar is off or a config brings
        one (Lightning refuses a bar callback beside enable_progress_bar: false)."""
        given = config.get("callbacks") or []
        given = given if isinstance(given, list) else [given]
        if config.get("enable_progress_bar", True) is not False and not any(
                isinstance(c, ProgressBar) for c in [*given, *callbacks]):
            callbacks = [*callbacks, EmberProgressBar()]
        _check_node_rank(config.get("num_nodes") or 1)
        try:
            return super()._instantiate_trainer(config, callbacks)
        except (ValueError, MisconfigurationException) as err:  # Lightning refused the accelerator/strategy/devices
            raise EmberConfigError(_trainer_refusal(err, config)) from None

    def before_fit(self):
        """A fit resumed from a checkpoint in a run folder continues that run, so its checkpoint callback (restored
        only into the folder it saved in) keeps the best-so-far and the summary names the true best."""
        ckpt_path = self.config["fit"].get("ckpt_path")
        for logger in self.trainer.loggers if ckpt_path else []:
            if isinstance(logger, EmberMLFlowLogger):  # a runs:/ URI names the run; a file, the folder it lies in
                folder = logger.continue_run(ckpt_path, artifact_run_id(self._ckpt_source))
                if folder is not None:
                    log.info("resuming run %s", folder)
                else:
                    log.warning("%s is not in a run folder of the MLflow store under %s: this fit starts a new run, "
                                "whose best checkpoint is chosen from its own validations",
                                self._ckpt_source, logger.save_dir)

    def _stopped(self) -> TrainingStopped:
        """A fit (or evaluation) that a stop signal ended, with the command that resumes a fit."""
        sub, last = self.subcommand, getattr(self.trainer.checkpoint_callback, "last_model_path", "")
        configs = [str(lg.run_path / "config.yaml") for lg in self.trainer.loggers
                   if isinstance(lg, EmberMLFlowLogger)][:1] or [str(c) for c in self.config[sub].get("config") or []]
        config = " ".join(f"--config {c}" for c in configs)
        return stopped(self.trainer, f"`ember {sub}`", f"Resume: ember fit {config} --ckpt_path {last}" if sub == "fit"
                       else "")

    def add_arguments_to_parser(self, parser):
        # --optimizer / --lr_scheduler as in any LightningCLI, but handed to the module (instantiate_classes) rather
        # than replacing its configure_optimizers: EmberModel steps its schedule itself, and either left out keeps
        # the module's default (AdamW, lr_at)
        parser.add_optimizer_args((Optimizer,))
        parser.add_lr_scheduler_args((LRScheduler,))  # per optimizer step, so no ReduceLROnPlateau
        parser.add_lightning_class_args(EmberCheckpoint, "checkpoint")  # last.ckpt = the latest validation
        parser.set_defaults({"checkpoint.monitor": "val/loss", "checkpoint.mode": "min",
                             "checkpoint.save_last": True, "checkpoint.save_top_k": 1,
                             "checkpoint.filename": "best", "checkpoint.auto_insert_metric_name": False})

    @rank_zero_only
    def after_fit(self):
        trainer = self.trainer
        ckpt = trainer.checkpoint_callback
        lines = ["", "Training finished."]
        if ckpt is not None and (ckpt.best_model_path or ckpt.last_model_path):
            lines.append(f"  checkpoint: {ckpt.best_model_path or ckpt.last_model_path}")
            if ckpt.last_model_path:
                lines.append(f"  last:       {ckpt.last_model_path}")
        for logger in trainer.loggers:
            if isinstance(logger, EmberMLFlowLogger):
                config = logger.run_path / "config.yaml"
                lines.append(f"  config:     {config}")
                if ckpt is not None and ckpt.best_model_path:
                    lines.append(f"  evaluate:   ember test --config {config} --ckpt_path {ckpt.best_model_path}")
                lines.append(f"  MLflow run: {logger.run_id} (experiment {logger.experiment_id})")
                lines.append(f"  browse:     {logger.ui_command()}")
        log.info("\n".join(lines))

    @rank_zero_only
    def after_predict(self):
        """Print each prompt's completion and keep them in the run (`predictions.txt`), which would be empty else."""
        items = [item for batch in self.trainer.predict_loop.predictions or [] for item in batch]
        for item in items:
            log.info("prompt %r -> %r", item["prompt"], item["completion"])
        lines = [f"{item['prompt']!r} -> {item['completion']!r}" for item in items]
        for logger in self.trainer.loggers:
            if isinstance(logger, EmberMLFlowLogger) and lines:
                logger.experiment.log_text(logger.run_id, "\n".join(lines) + "\n", "predictions.txt")


def stopped(trainer, what: str, resume: str) -> TrainingStopped:
    """What a stop signal left (TrainingStopped, exit status 128 + the signal): the MLflow run marked KILLED, the
    step reached, the last checkpoint, and `resume`, the way on (when there is a checkpoint)."""
    ckpt = trainer.checkpoint_callback
    signum = getattr(ckpt, "stopped_by", None) or signal.SIGTERM  # SIGTERM: Lightning caught it before EmberCheckpoint
    for logger in trainer.loggers:
        if isinstance(logger, EmberMLFlowLogger):
            logger.experiment.set_terminated(logger.run_id, "KILLED")
    last = getattr(ckpt, "last_model_path", "")
    said = f"{signum.name} stopped {what} at step {trainer.global_step}"
    if not last:
        return TrainingStopped(f"{said}; no checkpoint saved", 128 + signum)
    return TrainingStopped(f"{said}; last checkpoint {last}" + (f". {resume}" if resume else ""), 128 + signum)


def _check_node_rank(num_nodes: int) -> None:
    """NODE_RANK (or GROUP_RANK, torchrun's) must name one of the job's nodes: a rank past num_nodes would wait for
    peers that never come (torch.distributed's rendezvous has a 30-minute timeout)."""
    for name in ("NODE_RANK", "GROUP_RANK"):
        value = os.environ.get(name)
        if value is None:
            continue
        if not value.strip().isdigit() or int(value) >= num_nodes:
            raise EmberConfigError(f"{name}={value} is not a node of this job (--trainer.num_nodes {num_nodes}): give "
                                   f"each node its number, 0 to {num_nodes - 1}, or set --trainer.num_nodes to the "
                                   "number of nodes")
        return


def _trainer_refusal(err: BaseException, config: dict) -> str:
    """Lightning's word on trainer settings it refuses, as one message with the way on the CPU."""
    text = " ".join(str(err).split())
    strategy = str(config.get("strategy", ""))
    if "fsdp" in strategy.lower() or "FSDP" in text:
        return (f"{text} On a CPU, shard with FSDP2 instead (--config configs/cloud/fsdp2_cpu.yaml), or replicate with "
                "--trainer.strategy ddp.")
    return f"the trainer settings were refused: {text} (see `ember fit --help`, the trainer section)"


def _ember_loggers(trainer) -> list[Namespace]:
    """The parsed trainer config's logger entries that build an EmberMLFlowLogger (or a subclass), before they are
    built."""
    loggers = trainer.get("logger")
    found = []
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        path = logger.get("class_path") if isinstance(logger, Namespace) else None
        cls = pydoc.locate(path) if isinstance(path, str) else None
        if isinstance(cls, type) and issubclass(cls, EmberMLFlowLogger):
            found.append(logger)
    return found


def _run_dir_follows_root(trainer) -> None:
    """An Ember logger without a run_dir writes where the trainer's default_root_dir says (`runs` by default), so
    `--trainer.default_root_dir /shared/job7` puts the store, run folders, checkpoints and plots there."""
    for logger in _ember_loggers(trainer):
        if logger.get("init_args") is not None and logger["init_args"].get("run_dir") is None:
            logger["init_args"]["run_dir"] = trainer.get("default_root_dir") or "runs"


def _logger_store(trainer) -> tuple[str, str | None]:
    """(run_dir, tracking_uri) of the parsed trainer config's Ember logger, before it is built: its run_dir (unset:
    the trainer's default_root_dir, else `runs`) and tracking_uri; without an Ember logger, default_root_dir's."""
    root = trainer.get("default_root_dir") or "runs"
    for logger in _ember_loggers(trainer)[:1]:
        args = logger.get("init_args") or Namespace()
        return args.get("run_dir") or root, args.get("tracking_uri")
    return root, None


def _refuse_automatic_only(name: str, trainer):
    """gradient_clip_val and accumulate_grad_batches act in Lightning's automatic optimization only: for a module
    that steps itself (EmberModel's truncated BPTT), one line naming what to use instead of Lightning's error."""
    if trainer.gradient_clip_val:
        raise EmberConfigError(f"{name} clips gradients itself: use --model.init_args.grad_clip "
                               f"{trainer.gradient_clip_val} instead of --trainer.gradient_clip_val")
    if trainer.accumulate_grad_batches != 1:
        raise EmberConfigError(f"{name} steps its optimizer once per batch (truncated BPTT, manual optimization): "
                               "use a larger --data.init_args.batch_size instead of --trainer.accumulate_grad_batches")


def _as_dict(init) -> dict | None:
    """A parsed --optimizer / --lr_scheduler ({"class_path", "init_args"}) as a plain dict; None when not given."""
    return init.as_dict() if isinstance(init, Namespace) else init


def _leaves(model) -> dict:
    """The parsed model config flattened to {dotted key: value} (jsonargparse's Namespace.items); {} when absent."""
    return dict(model.items()) if model is not None else {}


def main(argv: list[str], from_command_line: bool = False) -> int:
    """Run a LightningCLI subcommand. From the command line LightningCLI reads sys.argv itself (its
    DDP launcher re-runs it in each process); otherwise it is given `argv`."""
    registry.load_plugins()
    check_config_names(argv)
    EmberCLI(args=None if from_command_line else argv)
    return 0
