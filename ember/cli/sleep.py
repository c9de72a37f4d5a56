"""`ember sleep`: a deployed model sleeps on what its memories learned. The sessions a memory-state file was built
from are replayed, the model's consolidator moves what the memories added into the slow weights, and a new
checkpoint is written (never over its input), with a report of what moved.

Letters: n bytes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import torch
from jsonargparse import ArgumentParser
from jsonargparse.typing import PositiveInt

from ember import registry
from ember.base import Consolidator
from ember.cli.flags import modernize
from ember.cli.runs import load_trained
from ember.errors import EmberConfigError, EmberDataError
from ember.files import atomic_path, check_writable, load_checkpoint
from ember.memory_state import load_memory_state
from ember.sleep import Episode, general_sequences

log = logging.getLogger("ember")


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="ember sleep", description="Replay the sessions a memory state was built from and move "
                       "what the memories learned into the slow weights (the config's consolidator, or "
                       "--consolidator); writes a new checkpoint and never changes its inputs.")
    p.add_argument("--config", required=True, help="the config the checkpoint was trained with")
    p.add_argument("--ckpt_path", required=True, help="the checkpoint to start from (read only)")
    p.add_argument("--memory_state", required=True, help="the memory-state file of the sessions (ember session)")
    p.add_argument("--replay", required=True, help="folder of the sessions' text files (*.txt), replayed from the "
                   "memory state")
    p.add_argument("--out", required=True, help="the new checkpoint; must not exist yet")
    p.add_argument("--general", default=None, help="a text file of general text that protects what the slow "
                   "weights know (slices of it are mixed into the replay); null: none")
    p.add_argument("--general_sequences", type=PositiveInt, default=16, help="general-text slices")
    p.add_argument("--general_length", type=PositiveInt, default=256, help="bytes per general-text slice")
    p.add_argument("--episode_length", type=PositiveInt, default=1024, help="a session longer than this is replayed "
                   "in pieces of this many bytes, each from the memory state")
    p.add_argument("--consolidator", type=Optional[Consolidator], default=None, help="the consolidator, e.g. "
                   "ReplayDistillation or ReadoutAlignment with --consolidator.init_args.*; null: the config's")
    p.add_argument("--seed", type=int, default=0, help="seed of the sleep's draws")
    p.add_argument("--report", default=None, help="also write the report as JSON to this file")
    return p


def main(argv: list[str]) -> int:
    registry.load_plugins()  # --consolidator names a registered class
    p = parser()
    args = p.instantiate_classes(p.parse_args(modernize(argv)))
    report = run_sleep(args)
    print(format_report(report))
    return 0


def check_paths(args) -> None:
    """Everything that can be refused before the model loads: a new --out beside its input, readable inputs."""
    out = Path(args.out)
    if out.exists():
        raise EmberConfigError(f"--out {out} already exists: ember sleep never overwrites; give a new path")
    check_writable(out, "--out")
    if args.report is not None:
        check_writable(args.report, "--report")
    for option, path in (("--ckpt_path", args.ckpt_path), ("--memory_state", args.memory_state)):
        if not Path(path).is_file():
            raise EmberDataError(f"{option} {path} is not a file: give the {option[2:].replace('_', ' ')} to sleep on")


def replay_texts(folder: str) -> list[tuple[str, bytes]]:
    """(name, bytes) of every *.txt file of the replay folder, by name; refuses a folder without sessions."""
    path = Path(folder)
    if not path.is_dir():
        raise EmberDataError(f"--replay {folder} is not a folder: give the folder of the sessions' text files")
    texts = [(f.name, f.read_bytes()) for f in sorted(path.glob("*.txt"))]
    texts = [(name, data) for name, data in texts if len(data) >= 2]
    if not texts:
        raise EmberDataError(f"--replay {folder} holds no session to replay (no *.txt file of 2 bytes or more): put "
                             "the text of the sessions the memory state was built from there")
    return texts


def run_sleep(args) -> dict:
    """One sleep as the arguments say; returns the report (the consolidator's metrics and what moved)."""
    check_paths(args)
    texts = replay_texts(args.replay)
    model = load_trained(args.config, args.ckpt_path)
    consolidator = args.consolidator if args.consolidator is not None else model.consolidator
    if consolidator is None:
        raise EmberConfigError(f"{args.config} has no consolidator (model.init_args.consolidator is null): pass one, "
                               "e.g. --consolidator ReplayDistillation")
    first = torch.tensor(list(texts[0][1][:1]), dtype=torch.long)[None]
    with torch.no_grad():
        state = load_memory_state(Path(args.memory_state), model, model(first)[1])
    episodes = [Episode(torch.tensor(list(data[i : i + args.episode_length + 1]), dtype=torch.long), state)
                for _, data in texts for i in range(0, len(data) - 1, args.episode_length)]
    general = ([] if args.general is None else
               general_sequences(args.general, args.general_sequences, args.general_length, args.seed))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    metrics = consolidator.consolidate(model, episodes, general, args.seed)
    moved = what_moved(before, model)
    checkpoint = load_checkpoint(args.ckpt_path)
    checkpoint["state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    checkpoint["ember_sleep"] = {"from": str(args.ckpt_path), "memory_state": str(args.memory_state),
                                 "sessions": [name for name, _ in texts], "metrics": metrics}
    with atomic_path(args.out) as tmp:
        torch.save(checkpoint, tmp)
    report = {"consolidator": type(consolidator).__name__, "out": str(args.out), "sessions": len(texts),
              "episodes": len(episodes), "metrics": metrics, "moved": moved}
    if args.report is not None:
        with atomic_path(args.report) as tmp:
            tmp.write_text(json.dumps(report, indent=2))
    return report


def what_moved(before: dict[str, torch.Tensor], model) -> dict[str, float]:
    """Relative change ||theta - theta0|| / ||theta0|| of each module whose weights changed (by the name up to the
    weight's own), largest first."""
    sums: dict[str, list[float]] = {}
    for name, p in model.named_parameters():
        delta = (p.detach() - before[name]).pow(2).sum().item()
        if delta > 0:
            module = name.rsplit(".", 1)[0]
            acc = sums.setdefault(module, [0.0, 0.0])
            acc[0] += delta
            acc[1] += before[name].pow(2).sum().item()
    rel = {m: (d / max(b, 1e-30)) ** 0.5 for m, (d, b) in sums.items()}
    return dict(sorted(rel.items(), key=lambda kv: -kv[1]))


def format_report(report: dict) -> str:
    lines = [f"slept with {report['consolidator']} on {report['sessions']} session(s) ({report['episodes']} "
             f"episode(s)); new checkpoint: {report['out']}"]
    lines += [f"  {k:<24} {v:.4f}" for k, v in report["metrics"].items()]
    moved = list(report["moved"].items())
    lines.append(f"what moved ({len(moved)} module(s), relative change):")
    lines += [f"  {m:<48} {r:.2e}" for m, r in moved[:12]]
    if len(moved) > 12:
        lines.append(f"  ... and {len(moved) - 12} more")
    return "\n".join(lines)

