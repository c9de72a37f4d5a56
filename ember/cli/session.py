"""`ember session`: stream text through a trained model whose memories write while its slow
weights stay frozen, printing the loss span by span, and keep the memory state on disk so the
next session starts with what this one learned.

Letters: b batch (1 stream), n bytes.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from jsonargparse import ArgumentParser
from jsonargparse.typing import PositiveInt

from ember.cli.flags import modernize
from ember.cli.runs import load_trained
from ember.errors import EmberConfigError, EmberDataError
from ember.files import check_writable
from ember.memory_state import load_memory_state, save_memory_state

log = logging.getLogger("ember")


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="ember session", description="Stream text through a trained model with its "
                            "memories writing and its slow weights frozen; keep the memory state in a file.")
    parser.add_argument("--config", required=True, help="the config the checkpoint was trained with")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint of that config")
    parser.add_argument("--memory_state", required=True,
                        help="memory-state file: loaded if it exists, written at the end")
    parser.add_argument("--input", required=True, help="text file, or - for standard input")
    parser.add_argument("--span", type=PositiveInt, default=256, help="bytes per reported span")
    args = parser.parse_args(modernize(argv))
    run_session(args.config, args.ckpt_path, args.memory_state, args.input, args.span)
    return 0



def read_input(source: str) -> bytes:
    data = sys.stdin.buffer.read() if source == "-" else _read_file(Path(source))
    if len(data) < 2:
        raise EmberDataError(f"--input {source} holds {len(data)} byte(s): a session needs at least 2")
    return data


def _read_file(path: Path) -> bytes:
    if not path.is_file():
        raise EmberDataError(f"--input {path} is not a file: give a text file, or - for standard input")
    return path.read_bytes()


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
    check_writable(memory_state, "--memory_state")  # before the session, not after it
    model = load_trained(config, ckpt_path)
    if model.backbone.state_grows():
        raise EmberConfigError(f"{type(model.backbone).__name__} keeps every token of the stream (full attention's KV "
                               "cache), so there is no fixed-size memory state to keep between sessions: use a "
                               "backbone with memories (NMLBackbone) or a windowed attention (window: W)")
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
