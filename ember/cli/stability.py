"""`ember stability`: learning during use must not touch the slow weights (issue #3, SPEC 3.2).

Measures bits per byte on held-out text with the memories OFF (no reads, no writes: the slow
weights alone), then runs a long adaptation: many sessions, each streamed with the memories
writing and its state saved to and loaded from a memory-state file exactly as `ember session`
does, then measures again. The slow weights are fingerprinted (sha256 of every tensor) before
and after; the memory-OFF bits per byte must not move. Also reported: memory-ON bits per byte
on the held-out text from a fresh state and from the adapted state.

Letters: n bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
from pathlib import Path

import torch
from jsonargparse import ArgumentParser
from jsonargparse.typing import PositiveInt

from ember.cli.flags import modernize
from ember.cli.runs import load_trained
from ember.cli.session import read_input, stream
from ember.data_modules.corpus import builtin_corpus
from ember.errors import EmberConfigError
from ember.files import atomic_write_text, check_writable
from ember.memory_state import load_memory_state, save_memory_state
from ember.ops.slot_memory import memories_off, slot_memories

log = logging.getLogger("ember")


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="ember stability", description="Memory-OFF bits per byte on held-out text and a "
                            "fingerprint of the slow weights, before and after many sessions with memories writing "
                            "(through a memory-state file, as `ember session`): learning during use must leave the "
                            "slow weights untouched.")
    parser.add_argument("--config", required=True, help="the config the checkpoint was trained with (with PM/EM)")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint of that config")
    parser.add_argument("--sessions", type=PositiveInt, default=20, help="number of adaptation sessions")
    parser.add_argument("--session_bytes", type=PositiveInt, default=4096,
                        help="bytes per session")
    parser.add_argument("--input", default=None, help="adaptation text file (default: the built-in corpus, "
                        "training part)")
    parser.add_argument("--heldout", default=None, help="held-out text file (default: the built-in corpus, last 10%%)")
    parser.add_argument("--heldout_bytes", type=PositiveInt, default=16384,
                        help="bytes of held-out text measured")
    parser.add_argument("--span", type=PositiveInt, default=256, help="bytes per forward call")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args(modernize(argv))
    result = run_stability(args.config, args.ckpt_path, args.sessions, args.session_bytes, args.input, args.heldout,
                           args.heldout_bytes, args.span, args.out)
    return 0 if result["weights_unchanged"] else 1


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def streamed_bpb(model, tokens: torch.Tensor, state=None, span: int = 256) -> tuple[float, object]:
    """Mean bits per predicted byte of tokens (1, n), streamed span by span from `state`; and the final state."""
    losses, state = stream(model, tokens, state, span)
    sizes = [min(span, tokens.shape[1] - 1 - start) for start in range(0, tokens.shape[1] - 1, span)]
    return sum(loss * size for loss, size in zip(losses, sizes)) / sum(sizes) / math.log(2), state


def bits_per_byte(model, tokens: torch.Tensor, state=None, span: int = 256) -> float:
    return streamed_bpb(model, tokens, state, span)[0]


def _text(source: str | None, default: bytes) -> torch.Tensor:
    data = default if source is None else read_input(source)
    return torch.tensor(list(data), dtype=torch.long)[None]  # (1, n)


def run_stability(config: str, ckpt_path: str, sessions: int = 20, session_bytes: int = 4096,
                  source: str | None = None, heldout: str | None = None, heldout_bytes: int = 16384,
                  span: int = 256, out: str | None = None) -> dict:
    """The benchmark; returns (and writes to `out` as JSON) the before/after table."""
    if sessions < 1 or session_bytes < 2 or heldout_bytes < 2:
        raise EmberConfigError("--sessions must be >= 1, --session_bytes and --heldout_bytes >= 2")
    if out:
        Path(out).expanduser().parent.mkdir(parents=True, exist_ok=True)
        check_writable(out, "--out")  # before the sessions, not after them
    model = load_trained(config, ckpt_path)
    if not slot_memories(model):
        raise EmberConfigError(f"{config} has no plastic memory (PM/EM): nothing to adapt; use a config with "
                               "backbone pm/em set, e.g. configs/quickstart.yaml")
    corpus = builtin_corpus()
    split = int(0.9 * len(corpus))  # the built-in corpus: adapt on the training part, measure on the rest
    stream_tokens = _text(source, corpus[:split])
    held = _text(heldout, corpus[split:])[:, :heldout_bytes]
    need = sessions * session_bytes
    if stream_tokens.shape[1] < need:
        raise EmberConfigError(f"the adaptation text has {stream_tokens.shape[1]} bytes but {sessions} sessions of "
                               f"{session_bytes} need {need}: give more text or lower --sessions/--session_bytes")
    before = _measure(model, held, span)
    state, per_session = _adapt(model, stream_tokens, sessions, session_bytes, span)
    after = _measure(model, held, span)
    after["bpb_memory_on_adapted"] = bits_per_byte(model, held, state, span)
    result = {"config": config, "ckpt_path": ckpt_path, "sessions": sessions, "session_bytes": session_bytes,
              "heldout_bytes": held.shape[1], "before": before, "after": after, "session_bpb": per_session,
              "weights_unchanged": before["weights_sha256"] == after["weights_sha256"],
              "bpb_memory_off_change": after["bpb_memory_off"] - before["bpb_memory_off"]}
    _report(result)
    if out:
        atomic_write_text(out, json.dumps(result, indent=2))  # a crash while writing keeps the earlier file whole
        log.info("wrote %s", out)
    return result


def _measure(model, held: torch.Tensor, span: int) -> dict:
    with memories_off(model):
        off = bits_per_byte(model, held, None, span)
    return {"weights_sha256": weights_digest(model), "bpb_memory_off": off,
            "bpb_memory_on_fresh": bits_per_byte(model, held, None, span)}


def _adapt(model, tokens: torch.Tensor, sessions: int, session_bytes: int, span: int):
    """Sessions through the memory-state file, as `ember session` runs them; returns the state, per-session bpb."""
    per_session, state = [], None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "adapt.mem"
        for i in range(sessions):
            part = tokens[:, i * session_bytes : (i + 1) * session_bytes]
            if path.exists():
                state = load_memory_state(path, model, model(part[:, :1])[1])
            bpb, state = streamed_bpb(model, part, state, span)
            per_session.append(bpb)
            state = model.backbone.end_session(state)
            save_memory_state(state, path, model)
            log.info("session %d/%d: %.4f bits/byte (memory on)", i + 1, sessions, per_session[-1])
    return state, per_session


def _report(r: dict):
    b, a = r["before"], r["after"]
    log.info("\n| | before | after %d sessions |\n|---|---|---|\n| bits/byte, memory OFF | %.4f | %.4f |\n"
             "| bits/byte, memory ON (fresh state) | %.4f | %.4f |\n| bits/byte, memory ON (adapted state) | | %.4f |\n"
             "| slow weights sha256 | %s | %s |\nslow weights %s; memory-OFF bits/byte change %+.6f",
             r["sessions"], b["bpb_memory_off"], a["bpb_memory_off"], b["bpb_memory_on_fresh"],
             a["bpb_memory_on_fresh"], a["bpb_memory_on_adapted"], b["weights_sha256"][:12], a["weights_sha256"][:12],
             "UNCHANGED" if r["weights_unchanged"] else "CHANGED", r["bpb_memory_off_change"])
