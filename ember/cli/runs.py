"""A trained run, loaded: the composite a config builds (with its overlays and options), a checkpoint's
weights in it, and the data module beside it. Used by `ember session`, `stability`, `ablate`, `bench` and
the analysis scripts under benchmarks/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import yaml

from ember import registry
from ember.cli.checks import check_config_names
from ember.cli.lightning import EmberCLI
from ember.data_modules.memory_task import MemoryTaskData
from ember.errors import EmberConfigError
from ember.files import load_checkpoint


def build_cli(config: str | list[str], extra: list[str] | tuple[str, ...] = ()):
    """The EmberCLI of a config (model and data module instantiated, no logger, nothing run).
    A list is a config and its overlays, merged in order as `ember fit --config A --config B` does.
    `extra` are further command-line options, e.g. `--data.init_args.eval_path FILE`."""
    config, *overlays = [config] if isinstance(config, str) else config
    extra = [*(arg for overlay in overlays for arg in ("--config", overlay)), *extra]
    registry.load_plugins()
    check_config_names(["--config", config, *extra])
    settings = yaml.safe_load(Path(config).read_text()) or {}
    for key in ("ckpt_path", "weights_only"):  # options of `fit` that a run's saved config.yaml records
        settings.pop(key, None)
    argv, sys.argv = sys.argv, sys.argv[:1]  # the command's own argv is not LightningCLI's (it warns when it sees both)
    try:
        return EmberCLI(args=["--config", yaml.safe_dump(settings), "--trainer.logger", "false", *extra], run=False)
    finally:
        sys.argv = argv


def comma_list(kind: Callable[[str], object], example: str) -> Callable[[str], list]:
    """An argparse `type`: '0.5,0.9' -> [kind('0.5'), kind('0.9')]. A part that kind refuses (ValueError) fails the
    option with a message that shows `example`, the expected form."""
    def parse(text: str) -> list:
        try:
            return [kind(part) for part in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated values such as {example}") from None
    return parse


def build_model(config: str):
    """Instantiate the composite of a config (no logger, no run)."""
    return build_cli(config).model


def load_weights(model, ckpt_path: str):
    """`model` with a checkpoint's weights (its state_dict: the average, for runs under weight EMA), in eval
    mode with its slow weights frozen."""
    checkpoint = load_checkpoint(ckpt_path)
    model.on_load_checkpoint(checkpoint)  # the composite refuses a checkpoint of another composite
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval().requires_grad_(False)  # slow weights frozen: only the fast memories change


def add_run_arguments(parser: argparse.ArgumentParser, use: str) -> None:
    """The options of a script that reads a trained run: --config (again for overlays), --ckpt_path, and --split,
    the puzzles it `use`s ("score", "draw")."""
    parser.add_argument("--config", required=True, action="append", help="the run's config.yaml; again for overlays")
    parser.add_argument("--ckpt_path", required=True, help="its checkpoint (EMA weights are what it holds)")
    parser.add_argument("--split", choices=["val", "test"], default="val", help=f"puzzles to {use} (default val)")


def add_memory_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a script that reads a trained memory-task run: --config (again for overlays), --ckpt_path,
    and --limit, the validation sessions it reads."""
    parser.add_argument("--config", required=True, action="append",
                        help="the run's config.yaml (a recall task under MemoryTaskData); again for overlays")
    parser.add_argument("--ckpt_path", required=True, help="its checkpoint")
    parser.add_argument("--limit", type=int, default=64, help="validation sessions to read (default 64)")


def split_loader(data, split: str):
    """The DataLoader of a data module's "val" or "test" split, set up for it."""
    data.setup("fit" if split == "val" else "test")
    return data.val_dataloader() if split == "val" else data.test_dataloader()


def load_run(config: list[str], ckpt_path: str, extra: list[str], kind: type):
    """The model (checkpoint weights, eval mode) and data module of a run's config, its overlays and further
    options. ValueError when the config's model is not a `kind`."""
    cli = build_cli(config, extra)
    if not isinstance(cli.model, kind):
        raise ValueError(f"{config[0]} trains a {type(cli.model).__name__}, not a {kind.__name__}")
    return load_weights(cli.model, ckpt_path), cli.datamodule  # the EMA weights when the run averaged them


def load_memory_run(config: list[str], ckpt_path: str, extra: list[str]):
    """The model (checkpoint weights, eval mode) and MemoryTaskData of a memory-task run's config, its overlays and
    further options. EmberConfigError when the config's data is not a memory task."""
    cli = build_cli(config, extra)
    if not isinstance(cli.datamodule, MemoryTaskData):
        raise EmberConfigError(f"{config[0]} does not train on a memory task (data: MemoryTaskData)")
    return load_weights(cli.model, ckpt_path), cli.datamodule


def load_trained(config: str, ckpt_path: str):
    """The model of a config with a checkpoint's weights, in eval mode with its slow weights frozen."""
    return load_weights(build_model(config), ckpt_path)
