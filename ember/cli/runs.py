"""`ember session`: stream text through a trained model whose memories write while its slow
weights stay frozen, printing the loss span by span, and keep the memory state on disk so the
next session starts with what this one learned.

Letters: b batch (1 stream), n bytes.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
import yaml

from ember.errors import EmberDataError
from ember.memory_state import load_memory_state, save_memory_state

log = logging.getLogger("ember")


def build_cli(config: str | list[str], extra: list[str] | tuple[str, ...] = ()):
    """The EmberCLI of a config (model and data module instantiated, no logger, nothing run).
    A list is a config and its overlays, merged in order as `ember fit --config A --config B` does.
    `extra` are further command-line options, e.g. `--data.init_args.eval_path FILE`."""
    from ember import registry
    from ember.cli import EmberCLI, check_config_names

    config, *overlays = [config] if isinstance(config, str) else config
    extra = [*(arg for overlay in overlays for arg in ("--config", overlay)), *extra]
    registry.load_plugins()
    check_config_names(["--config", config, *extra])
    settings = yaml.safe_load(Path(config).read_text()) or {}
    for key in ("ckpt_path", "weights_only"):  # options of `fit` that a run's saved config.yaml records
        settings.pop(key, None)
    return EmberCLI(args=["--config", yaml.safe_dump(settings), "--trainer.logger", "false", *extra], run=False)


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


def read_input(source: str) -> bytes:
    data = sys.stdin.buffer.read() if source == "-" else _read_file(Path(source))
    if len(data) < 2:
        raise EmberDataError(f"--input {source} holds {len(data)} byte(s): a session needs at least 2")
    return data


def _read_file(path: Path) -> bytes:
    if not path.is_file():
        raise EmberDataError(f"--input {path} is not a file: give a text file, or - for standard input")
    return path.read_bytes()


def load_weights(model, ckpt_path: str):
    """`model` with a checkpoint's weights (its state_dict: the average, for runs under weight EMA), in eval
    mode with its slow weights frozen."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    model.on_load_checkpoint(checkpoint)  # the composite refuses a checkpoint of another composite
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval().requires_grad_(False)  # slow weights frozen: only the fast memories change


def add_run_arguments(parser: argparse.ArgumentParser, use: str) -> None:
    """The options of a script that reads a trained run: --config (again for overlays), --ckpt_path, and --split,
    the puzzles it `use`s ("score", "draw")."""
    parser.add_argument("--config", required=True, action="append", help="the run's config.yaml; again for overlays")
    parser.add_argument("--ckpt_path", required=True, help="its checkpoint (EMA weights are what it holds)")
    parser.add_argument("--split", choices=["val", "test"], default="val", help=f"puzzles to {use} (default val)")


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


def load_trained(config: str, ckpt_path: str):
    """The model of a config with a checkpoint's weights, in eval mode with its slow weights frozen."""
    return load_weights(build_model(config), ckpt_path)


@torch.no_grad()
def stream(model, tokens, state=None, span: int = 256) -> tuple[list[float], object]:
    """Feed tokens (1, n) span by span with the state carried; returns per-span losses (nats/byte), state."""
    losses = []
    for start in range(0, tokens.shape[1] - 1, span):
        targets = tokens[:, start + 1 : start + span + 1]
        inputs = tokens[:, start : start + targets.shape[1]]
        logits, state = model(inputs, state)
        losses.append(F.cross_entropy(logits[0].float(), targets[0]).item())
        log.debug("span %d: %.4f nats/byte", len(losses), losses[-1])
    return losses, state


@torch.no_grad()
def run_session(config: str, ckpt_path: str, memory_state: str, source: str, span: int = 256) -> list[float]:
    """Stream `source` through the model span by span; returns the per-span losses (nats/byte)."""
    model = load_trained(config, ckpt_path)
    tokens = torch.tensor(list(read_input(source)), dtype=torch.long)[None]  # (1, n)
    path = Path(memory_state)
    state = None
    if path.exists():
        template = model(tokens[:, :1])[1]
        state = load_memory_state(path, model, template)
        log.info("memory state: loaded %s", path)
    losses = []
    for start in range(0, tokens.shape[1] - 1, span):
        part, state = stream(model, tokens[:, start : start + span + 1], state, span)
        losses += part
        log.info("span %d (bytes %d-%d): %.4f nats/byte, %.3f bits/byte", len(losses), start,
                 min(start + span, tokens.shape[1] - 1), part[0], part[0] / math.log(2))
    state = model.backbone.end_session(state)  # session end: memories commit their open spans
    save_memory_state(state, path, model)
    log.info("memory state: saved %s (%d bytes of state); mean %.4f nats/byte over %d span(s)", path,
             state.nbytes(), sum(losses) / len(losses), len(losses))
    return losses
