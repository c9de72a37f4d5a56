"""`ember ablate`: train and test one config under several variants and write one table.

Each variant is a name and the overlay configs (and/or dotted overrides) applied on top of the
base config, e.g. `no_memory=configs/ablate/no_memory.yaml`; `full=` (nothing) is the base
itself. Every variant gets the same data, seed and step budget; the table holds its parameter
count, its per-stream state size after one example, every `eval/...` and `test/...` metric
of `ember test` on its best checkpoint, and the data's chance accuracy where it names one
(BindingData). Output: <out>/ablation.md and <out>/ablation.json, rewritten after each variant;
with `resume`, the variants already in that JSON (same spec, base configs and overrides) are kept.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Optional

import torch
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ember import registry
from ember.base import ReasoningCore
from ember.batch import Batch
from ember.callbacks.memory_usage import MemoryUsage
from ember.cli.checks import check_config_names
from ember.cli.flags import modernize
from ember.cli.lightning import EmberCLI, stopped
from ember.errors import EmberConfigError, EmberDataError
from ember.files import atomic_write_text
from ember.ops.slot_memory import slot_memories

log = logging.getLogger("ember")


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="ember ablate", description="Fit and test a config under several variants "
                            "(overlays) with the same data, seed and budget; write one table (markdown + JSON).")
    parser.add_argument("--config", action="append", required=True, help="base config (repeat to stack configs)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=OVERLAY[,OVERLAY|,--key=value]",
                        help="a variant: overlay configs and/or dotted overrides on top of the base; NAME= alone "
                             "is the base itself (repeat; default: the base only)")
    parser.add_argument("--out", default="runs/ablate", help="folder for the table and the runs")
    parser.add_argument("--set", action="append", default=[], metavar="--key=value",
                        help="an override applied to every variant, e.g. --set=--trainer.max_steps=200")
    parser.add_argument("--resume", action="store_true",
                        help="keep the variants already in <out>/ablation.json (same spec, configs and --set "
                             "overrides) and fit only the others, e.g. after an interrupted run")
    parser.add_argument("--memories_off", action="store_true",
                        help="also test every variant that has plastic memories (PM, EM) with them switched off "
                             "(same weights, no reads or writes): one more line per such variant")
    args = parser.parse_args(modernize(argv))
    registry.load_plugins()
    extra = [a for item in args.set for a in item.split("=", 1)]
    run_ablation(args.config, args.variant, args.out, extra, resume=args.resume, memories_off=args.memories_off)
    return 0


def parse_variant(text: str) -> tuple[str, list[str]]:
    """'name=a.yaml,b.yaml,--key=value' -> (name, CLI args)."""
    name, _, spec = text.partition("=")
    if not name or not _:
        raise EmberConfigError(f"--variant {text!r}: write NAME=OVERLAY[,OVERLAY...] (NAME= for the base alone)")
    args = []
    for part in filter(None, spec.split(",")):
        if part.startswith("--"):
            key, _, value = part.partition("=")
            args += [key, value]
        else:
            if not Path(part).is_file():
                raise EmberConfigError(f"--variant {name}: overlay {part} is not a file")
            args += ["--config", part]
    return name, args


def state_bytes(model, datamodule) -> Optional[int]:
    """Bytes of fast state one stream carries after one validation example; None for a ReasoningCore,
    which carries no stream state from one puzzle to the next."""
    if isinstance(model, ReasoningCore):
        return None
    datamodule.setup("validate")
    batch = next(iter(datamodule.val_dataloader()))
    tokens = Batch.of(batch).tokens
    with torch.no_grad():
        _, state = model.to("cpu").float()(tokens[:1, :-1])
    return state.nbytes()


def merged(results: list[dict]) -> dict:
    """One dict of the metrics `trainer.test` returns per test loader (text, then each benchmark; Ember logs
    them without the loader index, so their names do not clash)."""
    return {k: v for result in results for k, v in result.items()}


def run_variant(name: str, base: list[str], extra: list[str], out: Path, memories_off: bool = False) -> dict:
    args = [*base, *extra, "--trainer.logger.init_args.run_dir", str(out / "runs"),
            "--trainer.logger.init_args.run_name", name]
    check_config_names(args)
    cli = EmberCLI(args=args, run=False)
    params = sum(p.numel() for p in cli.model.parameters())
    log.info("ablate: variant %s (%d parameters)", name, params)
    start = time.time()
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    except SIGTERMException:  # Ctrl+C or SIGTERM: Lightning's stop between batches, a SystemExit without a status
        raise stopped(cli.trainer, f"variant {name} of `ember ablate`", "Rerun the same command with --resume: "
                      "the variants finished are kept, this one fits again") from None
    minutes, steps = (time.time() - start) / 60, cli.trainer.global_step
    ckpt = cli.trainer.checkpoint_callback
    path = (ckpt.best_model_path or ckpt.last_model_path) if ckpt is not None else None
    # test the checkpoint's state_dict, as `ember test` does: that is the average under EMAWeightAveraging,
    # but the callback, still attached after a fit, would restore the trained weights kept beside it
    cli.trainer.callbacks = [c for c in cli.trainer.callbacks if not isinstance(c, WeightAveraging)]
    cli.model.test_memories_off = False  # the table's own row does it, with --memories_off
    metrics = merged(cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=path or None, verbose=False))
    row = {"variant": name, "params": params, "state_bytes": state_bytes(cli.model, cli.datamodule),
           "steps": steps, "train_minutes": round(minutes, 2), "checkpoint": path}
    row.update(scores(metrics))
    if memories_off and slot_memories(cli.model):
        cli.model.memories = "off"  # the same weights, no memory reads or writes (EmberModel.memories)
        # the variant's MLflow run and its slot-usage plot keep the memories-on test; this one goes to the table
        cli.trainer.loggers = []
        cli.trainer.callbacks = [c for c in cli.trainer.callbacks if not isinstance(c, MemoryUsage)]
        # the first test loaded the checkpoint's weights into cli.model: test them as they are (ckpt_path None)
        metrics = merged(cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False))
        row["memories_off"] = scores(metrics)
    if getattr(cli.datamodule, "chance", None) is not None:  # e.g. BindingData: the accuracy without the signal
        row["chance"] = float(cli.datamodule.chance)
    return row


def scores(metrics: dict) -> dict[str, float]:
    """The eval/... and test/... metrics of a test run."""
    return {k: float(v) for k, v in metrics.items() if k.startswith(("eval/", "test/"))}


def markdown(rows: list[dict]) -> str:
    """One line per variant, and under a variant tested again with its memories off (`memories_off`), a
    line with those scores."""
    skip = ("variant", "checkpoint", "memories_off")
    keys = [k for k in rows[0] if k not in skip]
    for row in rows[1:]:
        keys += [k for k in row if k not in keys and k not in skip]
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
    line = lambda name, r: f"| {name} | " + " | ".join(fmt(r.get(k)) for k in keys) + " |"  # noqa: E731
    lines = ["| variant | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for r in rows:
        lines.append(line(r["variant"], r))
        if "memories_off" in r:
            lines.append(line(f"{r['variant']}, memories off at test", r["memories_off"]))
    return "\n".join(lines) + "\n"


def finished_rows(out_dir: Path, configs: list[str], variants: list[str], extra: list[str]) -> dict[str, dict]:
    """Rows of an earlier ablation in out_dir that `--resume` may keep: those whose variant has the same
    spec, under the same base configs and overrides (a changed spec or override is fitted again)."""
    path = out_dir / "ablation.json"
    if not path.is_file():
        return {}
    try:
        table = json.loads(path.read_text())
        rows = [row for row in table.get("rows", []) if isinstance(row["variant"], str)]
        specs = {v.partition("=")[0]: v for v in table.get("variants", [])}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise EmberDataError(f"{path} is not a readable ablation table ({err}): move it away to fit every variant "
                             "again, or restore it") from err
    if table.get("configs") != configs or table.get("extra") != extra:
        log.info("ablate: %s was made with other configs or overrides; fitting every variant again", path)
        return {}
    wanted = {v.partition("=")[0]: v for v in variants}
    return {row["variant"]: row for row in rows
            if row["variant"] in wanted and specs.get(row["variant"]) == wanted[row["variant"]]}


def run_ablation(configs: list[str], variants: list[str], out: str, extra: list[str],
                 resume: bool = False, memories_off: bool = False) -> list[dict]:
    """Fit and test every variant; write the table after each one (a crash keeps the finished rows,
    and `resume` keeps them on the next call instead of fitting them again). With `memories_off`, every
    variant that has plastic memories is also tested with them switched off (same weights)."""
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise EmberConfigError(f"--out {out_dir} is a file: give a folder for the table and the runs")
    if (out_dir / "ablation.json").is_file() and not resume:
        raise EmberConfigError(f"{out_dir} already holds an ablation table: pass --resume to keep its finished "
                               "variants, or choose another --out (nothing was changed)")
    out_dir.mkdir(parents=True, exist_ok=True)
    variants = variants or ["base="]  # the base config alone
    parsed = [parse_variant(v) for v in variants]
    base = [a for c in configs for a in ("--config", c)] + extra
    done = finished_rows(out_dir, configs, variants, extra) if resume else {}
    rows = []
    for name, overlay in parsed:
        if name in done:
            log.info("ablate: variant %s already in %s, kept (--resume)", name, out_dir / "ablation.json")
            rows.append(done[name])
        else:
            rows.append(run_variant(name, base, overlay, out_dir, memories_off))
        table = {"configs": configs, "extra": extra, "variants": variants[: len(rows)], "rows": rows}
        atomic_write_text(out_dir / "ablation.json", json.dumps(table, indent=1))
        atomic_write_text(out_dir / "ablation.md", markdown(rows))
    log.info("ablate: table in %s\n%s", out_dir / "ablation.md", markdown(rows))
    return rows
