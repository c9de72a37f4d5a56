"""The `ember` command: LightningCLI subcommands (fit/validate/test/predict) plus `plugins` and `data`.

    ember fit --config configs/quickstart.yaml [--config configs/ablate/x.yaml] [--trainer.max_steps 100]
    ember test --config runs/<exp>/<run>/config.yaml --ckpt_path runs/<exp>/<run>/checkpoints/best.ckpt
    ember plugins [show NAME]
    ember data prepare text --input FILE [FILE ...] --out DIR
    ember data prepare audio-prosody --out DIR [--size N] [--seed S]
    ember bench --config C [C ...] [--contexts 2048,8192,16384]
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import yaml
from jsonargparse import ArgumentParser, DefaultHelpFormatter, lazy_instance
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.rank_zero import rank_zero_only

import ember
from ember import registry
from ember.callbacks.checkpoint import EmberCheckpoint
from ember.callbacks.learning_curves import LearningCurves
from ember.callbacks.memory_usage import MemoryUsage
from ember.errors import EmberConfigError, EmberError
from ember.model import EmberModel  # noqa: F401  (imported so `class_path: EmberModel` resolves)
from ember.tracking import EmberMLFlowLogger, MLflowSaveConfig

log = logging.getLogger("ember")
DESCRIPTION = """Ember: train, evaluate and ablate composite sequence models assembled from plugins.

  ember fit --config configs/quickstart.yaml       train (add --config overlays to ablate)
  ember validate|test|predict --config C --ckpt_path K
  ember plugins [show NAME]                        list plugins by kind / show one's options
  ember data prepare text --input F --out DIR      write text as webdataset shards
  ember data prepare audio-prosody --out DIR       synthesize prosody audio as webdataset shards
  ember session --config C --ckpt_path K --memory-state F --input TEXT|-
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
    """LightningCLI with Ember's defaults: MLflow tracking, checkpoints, and a closing summary."""

    def __init__(self, args=None, run: bool = True):
        super().__init__(
            LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
            save_config_callback=MLflowSaveConfig, save_config_kwargs={"overwrite": True},
            trainer_defaults={"logger": lazy_instance(EmberMLFlowLogger), "default_root_dir": "runs",
                              "log_every_n_steps": 10,
                              "callbacks": [lazy_instance(LearningCurves), lazy_instance(MemoryUsage)]},
            auto_configure_optimizers=False, args=args, run=run,
            parser_kwargs={"description": DESCRIPTION, "formatter_class": RawDescriptionHelpFormatter},
        )

    def parse_arguments(self, parser, args):
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        self._asked_model = _leaves(self.config[sub].get("model")) if sub else {}

    def before_instantiate_classes(self):
        """Say which model settings a --ckpt_path replaced: LightningCLI restores the checkpoint's hyper-parameters
        over the config and the command line, silently."""
        sub = self.config.get("subcommand")
        if not sub or not self.config[sub].get("ckpt_path"):
            return
        now = _leaves(self.config[sub].get("model"))
        replaced = [f"model.{key}: {asked!r} -> {now[key]!r}" for key, asked in self._asked_model.items()
                    if key in now and now[key] != asked]
        if replaced:
            log.warning("--ckpt_path %s restores the hyper-parameters saved in it over the config and command line "
                        "(LightningCLI's rule), so these settings do not apply:\n  %s\nTo train under other values, "
                        "start a new run without --ckpt_path.", self.config[sub]["ckpt_path"], "\n  ".join(replaced))

    def add_arguments_to_parser(self, parser):
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
                lines.append(f"  browse:     make ui   (or: {logger.ui_command()})")
        log.info("\n".join(lines))

    @rank_zero_only
    def after_predict(self):
        for batch in self.trainer.predict_loop.predictions or []:
            for item in batch:
                log.info("prompt %r -> %r", item["prompt"], item["completion"])


def _leaves(model) -> dict:
    """The parsed model config flattened to {dotted key: value} (jsonargparse's Namespace.items); {} when absent."""
    return dict(model.items()) if model is not None else {}


# ---- config checks before parsing ------------------------------------------------------------
def _config_files(argv: list[str]) -> list[str]:
    files = []
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            files.append(argv[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def _class_paths(node, where: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}" if where else str(key)
            if key == "class_path" and isinstance(value, str):
                yield where, value
            else:
                yield from _class_paths(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _class_paths(value, f"{where}[{i}]")


def _known_short_names() -> set[str]:
    import lightning.pytorch.callbacks as callbacks
    import lightning.pytorch.loggers as loggers
    import torch.optim
    import torch.optim.lr_scheduler

    names = set(registry.plugins()) | {"EmberModel", "EmberMLFlowLogger"}
    for module in (callbacks, loggers, torch.optim, torch.optim.lr_scheduler):
        names |= {n for n in dir(module) if not n.startswith("_")}
    return names


def check_config_names(argv: list[str]):
    """Fail early, with near names, on a class_path that names no importable class."""
    known = None
    for file in _config_files(argv):
        path = Path(file)
        if not path.is_file():
            raise EmberConfigError(f"config file {file} does not exist (paths are relative to {Path.cwd()})")
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise EmberConfigError(f"{file} is not valid YAML: {err}") from err
        for where, name in _class_paths(config):
            if "." in name:
                _check_importable(name, file, where)
                continue
            known = known if known is not None else _known_short_names()
            if name not in known:
                raise EmberConfigError(f"unknown plugin {name!r} at {where} in {file}: "
                                       f"{registry.suggest(name, sorted(known))}")


def _check_importable(dotted: str, file: str, where: str):
    import importlib

    module, _, attr = dotted.rpartition(".")
    try:
        getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise EmberConfigError(f"cannot import {dotted!r} at {where} in {file} ({err}): "
                               f"{registry.suggest(attr)}") from err


# ---- ember plugins -------------------------------------------------------------------------
def plugins_command(argv: list[str]) -> int:
    parser = ArgumentParser(prog="ember plugins", description="List the registered plugins by kind, or show one.")
    parser.add_argument("action", nargs="?", default="list", choices=["list", "show"], help="list (default) or show")
    parser.add_argument("name", nargs="?", help="plugin name for `show`")
    args = parser.parse_args(argv)
    failures = registry.load_plugins()
    found = registry.plugins()
    if args.action == "show":
        if not args.name:
            parser.error("`ember plugins show` needs a NAME, e.g. `ember plugins show NMLBackbone`")
        return _show_plugin(args.name, found)
    by_kind: dict[str, list] = {}
    for info in found.values():
        by_kind.setdefault(info.kind, []).append(info)
    kinds = [k for k in registry.PLUGIN_KINDS] + list(registry.EXTRA_KINDS)
    width = max((len(n) for n in found), default=10) + 2
    out = []
    for kind in kinds:
        out.append(f"{kind}:")
        infos = sorted(by_kind.get(kind, []), key=lambda i: i.name)
        out += [f"  {i.name:<{width}}{i.description}" for i in infos] or ["  (none installed)"]
    for name, err in failures.items():
        out.append(f"failed to import: {name}: {err}")
    out.append("\n`ember plugins show NAME` prints a plugin's options; use it in YAML as `class_path: NAME`.")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def _show_plugin(name: str, found: dict) -> int:
    info = found.get(name)
    if info is None:
        raise EmberConfigError(f"no plugin named {name!r}: {registry.suggest(name)}")
    import inspect

    parser = ArgumentParser(prog=f"class_path: {info.name}", description=None, add_help=False)
    parser.add_class_arguments(info.cls, fail_untyped=False)
    doc = inspect.cleandoc(info.cls.__doc__ or "").split("\n    Args:")[0].split("\nArgs:")[0]
    header = f"{info.name}  ({info.kind}; {info.class_path})\n\n{doc}\n\nOptions (init_args):\n"
    text = parser.format_help()
    sys.stdout.write(header + text[text.index("\n\n") + 2 :])
    return 0


# ---- ember data ----------------------------------------------------------------------------
def data_command(argv: list[str]) -> int:
    parser = ArgumentParser(prog="ember data", description="Prepare data sets (nothing is downloaded).")
    sub = parser.add_subcommands(required=True, dest="command")
    prepare = ArgumentParser(description="Prepare a data set.")
    text = ArgumentParser(description="Write text files as webdataset shards for TextBytes (data.path: OUT).")
    text.add_argument("--input", type=str, required=True, nargs="+", help="text files or folders")
    text.add_argument("--out", type=str, required=True, help="output folder (must be new or empty)")
    text.add_argument("--chunk_bytes", type=int, default=1 << 16, help="bytes per sample")
    text.add_argument("--shard_bytes", type=int, default=1 << 28, help="maximum bytes per shard file")
    text.add_argument("--val_fraction", type=float, default=0.1, help="trailing share of the text kept for validation")
    text.add_argument("--overwrite", type=bool, default=False, help="replace a non-empty --out")
    sub.add_subcommand("prepare", prepare)
    kinds = prepare.add_subcommands(required=True, dest="kind")
    kinds.add_subcommand("text", text)
    kinds.add_subcommand("audio-prosody", _audio_prosody_parser())
    args = parser.parse_args(argv)
    if args.prepare.kind == "audio-prosody":
        return _prepare_audio_prosody(args.prepare["audio-prosody"])
    from ember.data_modules.shards import prepare_text_shards

    opts = args.prepare.text
    inputs = list(opts.input)
    manifest = prepare_text_shards([Path(p) for p in inputs], Path(opts.out), opts.chunk_bytes, opts.shard_bytes,
                                   opts.val_fraction, opts.overwrite)
    log.info("prepared %s: train %d bytes in %d shard(s), val %d bytes. Train with --data.init_args.path %s",
             opts.out, manifest["train"]["bytes"], len(manifest["train"]["shards"]), manifest["val"]["bytes"], opts.out)
    return 0


def _audio_prosody_parser() -> ArgumentParser:
    audio = ArgumentParser(description="Synthesize prosody utterances (same words, class in the sound) as "
                           "webdataset shards for ProsodyData (data.path: OUT).")
    audio.add_argument("--out", type=str, required=True, help="output folder (must be new or empty)")
    audio.add_argument("--size", type=int, default=2000, help="utterances in all (train + val)")
    audio.add_argument("--seed", type=int, default=0, help="seed: the same seed writes the same audio")
    audio.add_argument("--task", type=str, default="all", help="question, arousal, confidence or all")
    audio.add_argument("--source", type=str, default="synth", help="synth (built in) or espeak (needs espeak-ng)")
    audio.add_argument("--seconds", type=float, default=1.5, help="length of every utterance")
    audio.add_argument("--val_fraction", type=float, default=0.1, help="share of the utterances kept for validation")
    audio.add_argument("--overwrite", type=bool, default=False, help="replace a non-empty --out")
    return audio


def _prepare_audio_prosody(opts) -> int:
    from ember.data_modules.audio_shards import prepare_prosody_shards

    manifest = prepare_prosody_shards(Path(opts.out), opts.size, opts.seed, opts.task, opts.seconds,
                                      val_fraction=opts.val_fraction, overwrite=opts.overwrite, source=opts.source)
    log.info("prepared %s: %d train and %d val utterances. Train with --data.init_args.path %s", opts.out,
             manifest["train"]["samples"], manifest["val"]["samples"], opts.out)
    return 0


# ---- ember session -------------------------------------------------------------------------
def session_command(argv: list[str]) -> int:
    parser = ArgumentParser(prog="ember session", description="Stream text through a trained model with its "
                            "memories writing and its slow weights frozen; keep the memory state in a file.")
    parser.add_argument("--config", required=True, help="the config the checkpoint was trained with")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint of that config")
    parser.add_argument("--memory-state", dest="memory_state", required=True,
                        help="memory-state file: loaded if it exists, written at the end")
    parser.add_argument("--input", required=True, help="text file, or - for standard input")
    parser.add_argument("--span", type=int, default=256, help="bytes per reported span")
    args = parser.parse_args(argv)
    from ember.session import run_session

    run_session(args.config, args.ckpt_path, args.memory_state, args.input, args.span)
    return 0


# ---- ember stability -----------------------------------------------------------------------
def stability_command(argv: list[str]) -> int:
    parser = ArgumentParser(prog="ember stability", description="Memory-OFF bits per byte on held-out text and a "
                            "fingerprint of the slow weights, before and after many sessions with memories writing "
                            "(through a memory-state file, as `ember session`): learning during use must leave the "
                            "slow weights untouched.")
    parser.add_argument("--config", required=True, help="the config the checkpoint was trained with (with PM/EM)")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint of that config")
    parser.add_argument("--sessions", type=int, default=20, help="number of adaptation sessions")
    parser.add_argument("--session-bytes", dest="session_bytes", type=int, default=4096, help="bytes per session")
    parser.add_argument("--input", default=None, help="adaptation text file (default: the built-in corpus, "
                        "training part)")
    parser.add_argument("--heldout", default=None, help="held-out text file (default: the built-in corpus, last 10%%)")
    parser.add_argument("--heldout-bytes", dest="heldout_bytes", type=int, default=16384,
                        help="bytes of held-out text measured")
    parser.add_argument("--span", type=int, default=256, help="bytes per forward call")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args(argv)
    from ember.stability import run_stability

    result = run_stability(args.config, args.ckpt_path, args.sessions, args.session_bytes, args.input, args.heldout,
                           args.heldout_bytes, args.span, args.out)
    return 0 if result["weights_unchanged"] else 1


# ---- ember ablate --------------------------------------------------------------------------
def ablate_command(argv: list[str]) -> int:
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
    parser.add_argument("--memories-off", action="store_true",
                        help="also test every variant that has plastic memories (PM, EM) with them switched off "
                             "(same weights, no reads or writes): one more line per such variant")
    args = parser.parse_args(argv)
    from ember.ablate import run_ablation

    registry.load_plugins()
    extra = [a for item in args.set for a in item.split("=", 1)]
    run_ablation(args.config, args.variant, args.out, extra, resume=args.resume, memories_off=args.memories_off)
    return 0


# ---- entry point ---------------------------------------------------------------------------
def _setup_logging():
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (2 for a configuration or data error)."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    _setup_logging()
    try:
        if argv[:1] == ["plugins"]:
            return plugins_command(argv[1:])
        if argv[:1] == ["data"]:
            return data_command(argv[1:])
        if argv[:1] == ["session"]:
            return session_command(argv[1:])
        if argv[:1] == ["stability"]:
            return stability_command(argv[1:])
        if argv[:1] == ["ablate"]:
            return ablate_command(argv[1:])
        if argv[:1] == ["bench"]:
            from ember.bench_cli import bench_command

            return bench_command(argv[1:])
        if argv[:1] in (["--version"], ["-V"]):
            sys.stdout.write(f"ember {ember.__version__}\n")
            return 0
        registry.load_plugins()
        check_config_names(argv)
        EmberCLI(args=None if from_command_line else argv)
        return 0
    except EmberError as err:
        log.error("error: %s", err)
        return 2
    except Exception as err:
        cause = _ember_cause(err)
        if cause is None:
            raise
        log.error("error: %s", cause)
        return 2


def _ember_cause(err: BaseException) -> EmberError | None:
    """The EmberError behind an exception that jsonargparse or Lightning wrapped, if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, EmberError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def run():
    """Console script: exit with main()'s status."""
    sys.exit(main())


if __name__ == "__main__":
    run()
