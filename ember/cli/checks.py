"""Config checks that run before LightningCLI parses anything: a class_path that names no importable
class stops with the near names, not with a page of usage."""

from __future__ import annotations

import importlib
from pathlib import Path

import lightning.pytorch.callbacks as lightning_callbacks
import lightning.pytorch.loggers as lightning_loggers
import torch.optim
import torch.optim.lr_scheduler
import yaml

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


def _known_short_names() -> set[str]:
    names = set(registry.plugins()) | {"EmberModel", "EmberMLFlowLogger"}
    for module in (lightning_callbacks, lightning_loggers, torch.optim, torch.optim.lr_scheduler):
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
    module, _, attr = dotted.rpartition(".")
    try:
        getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise EmberConfigError(f"cannot import {dotted!r} at {where} in {file} ({err}): "
                               f"{registry.suggest(attr)}") from err
