"""Config checks that run before LightningCLI parses anything: a class_path that names no importable
class stops with the near names, not with a page of usage. And the parser's own errors (a misspelled
option, a wrong type on the command line) as one short message with the near names, usage on request."""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
import sys
from pathlib import Path

import lightning.pytorch.callbacks as lightning_callbacks
import lightning.pytorch.loggers as lightning_loggers
import torch.optim
import torch.optim.lr_scheduler
import yaml
from lightning.pytorch.cli import LightningArgumentParser

from ember import registry
from ember.errors import EmberConfigError


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


def known_class_paths() -> dict[str, str]:
    """{short name: dotted path} of every short name a config's class_path may use: the plugins, EmberModel,
    EmberMLFlowLogger, Lightning's callbacks and loggers, torch's optimizers and lr schedulers (the first of these
    that has a name wins). `ember plugins show` reads it too."""
    paths = {name: info.class_path for name, info in registry.plugins().items()}
    paths |= {"EmberModel": "ember.model.EmberModel", "EmberMLFlowLogger": "ember.tracking.EmberMLFlowLogger"}
    for module in (lightning_callbacks, lightning_loggers, torch.optim, torch.optim.lr_scheduler):
        paths |= {n: f"{module.__name__}.{n}" for n in dir(module) if not n.startswith("_") and n not in paths}
    return paths


def _known_short_names() -> set[str]:
    return set(known_class_paths())


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
    module, _, attr = dotted.rpartition(".")
    try:
        getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise EmberConfigError(f"cannot import {dotted!r} at {where} in {file} ({err}): "
                               f"{registry.suggest(attr)}") from err


class ShortErrorParser(LightningArgumentParser):
    """LightningCLI's parser, whose errors are the message (with the near names of a misspelled option) and
    where to find every option, instead of 60 lines of usage with the message last."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:
            return super().error(message, ex)  # a nested parser: its caller decides
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        hint = near_option_names(message, list(parser._option_string_actions))
        first, details = (hint, message.strip()) if hint else (message.strip(), "")
        sys.stderr.write(f"error: {first}\n" + (f"details: {details}\n" if details else "") +
                         f"every option: {prog} --help\n")
        self.exit(2)


def near_option_names(message: str, options: list[str]) -> str:
    """'did you mean' for an unrecognized command-line option (`options`, the parser's, are the candidates) or
    jsonargparse's "Option 'x' is not accepted" in a class_path's init_args (the class's own arguments are), or
    "" when the message names no option."""
    unknown = re.search(r"[Uu]nrecognized arguments: (--[\w.\-]+)", message)
    if unknown:
        close = difflib.get_close_matches(unknown.group(1), options, n=3, cutoff=0.6)
        return f"no option {unknown.group(1)}" + (f": did you mean {' or '.join(close)}?" if close else "")
    option = re.search(r"Option '([^']+)' is not accepted", message)
    owner = re.search(r"class_path '([\w.]+)'", message)
    if not option or not owner:
        return ""
    module, _, name = owner.group(1).rpartition(".")
    try:
        known = [p for p in inspect.signature(getattr(importlib.import_module(module), name)).parameters
                 if p not in ("self", "args", "kwargs")]
    except (ImportError, AttributeError, TypeError, ValueError):
        return ""
    close = difflib.get_close_matches(option.group(1), known, n=3, cutoff=0.5)
    return f"{name} has no option {option.group(1)!r}" + (f": did you mean {' or '.join(close)}?" if close else
                                                           f"; its options: {', '.join(known)}")
