"""`ember plugins show NAME`: one class's description and options (init_args).

NAME is anything a config's `class_path:` can name: a plugin (imported through ember.registry, with its kind), a
short name that ember.cli.checks knows (EmberModel, EmberMLFlowLogger, Lightning's callbacks and loggers, torch's
optimizers and lr schedulers), an installed plugin's entry-point name, or a dotted path. An unknown name gets the
near names; a plugin whose module fails to import gets the error.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from types import ModuleType

from jsonargparse import ArgumentParser

from ember import catalog, registry
from ember.cli.checks import known_class_paths
from ember.errors import EmberConfigError


def show(name: str) -> int:
    """Print what `name` names; raises EmberConfigError when it names no class."""
    failures = registry.load_plugins()
    found = registry.plugins()
    if name in failures:
        raise EmberConfigError(f"plugin {name!r} failed to import ({failures[name]}): fix or uninstall its package")
    target = found[name].cls if name in found else _installed(name)
    if isinstance(target, ModuleType):  # an installed plugin's entry point naming a module
        sys.stdout.write(_provides(name, target, found))
        return 0
    target = target or _import(_dotted_path(name, failures))
    if not inspect.isclass(target):
        raise EmberConfigError(f"{name!r} is {type(target).__name__} {getattr(target, '__name__', target)!r}, "
                               "not a class; a class_path names a class")
    kind = next((info.kind for info in found.values() if info.cls is target), None)
    sys.stdout.write(describe(target, kind))
    return 0


def describe(cls: type, kind: str | None) -> str:
    """The header (name, kind, dotted path), the docstring up to its Args: section, and the options' help."""
    parser = ArgumentParser(prog=f"class_path: {cls.__name__}", description=None, add_help=False)
    parser.add_class_arguments(cls, fail_untyped=False)
    doc = inspect.cleandoc(cls.__doc__ or "").split("\n    Args:")[0].split("\nArgs:")[0]
    where = f"{kind}; " if kind else ""
    header = f"{cls.__name__}  ({where}{cls.__module__}.{cls.__qualname__})\n\n{doc}\n\nOptions (init_args):\n"
    text = parser.format_help()
    return header + text[text.index("\n\n") + 2 :]


def _installed(name: str):
    """What the installed plugin whose entry point is `name` loads (a class or a module), or None."""
    point = next((ep for ep in catalog.installed() if ep.name == name), None)
    return point.load() if point is not None else None


def _dotted_path(name: str, failures: dict[str, str]) -> str:
    """The dotted path `name` stands for: itself when dotted, else the known short name's."""
    if "." in name:
        return name
    known = known_class_paths()
    if name in known:
        return known[name]
    builtin = catalog.builtin_plugins().get(name)
    module = builtin.class_path.rpartition(".")[0] if builtin else ""
    if module in failures:
        raise EmberConfigError(f"plugin {name!r} is unavailable: its module {module} failed to import "
                               f"({failures[module]})")
    raise EmberConfigError(f"no plugin or class named {name!r}: {registry.suggest(name, sorted(known))}")


def _import(path: str):
    """What dotted `path` names; an unknown last part gets the module's near names."""
    module, _, attr = path.rpartition(".")
    try:
        owner = importlib.import_module(module)
    except (ImportError, ValueError) as err:
        raise EmberConfigError(f"cannot import {path!r}: {type(err).__name__}: {err}") from err
    if not hasattr(owner, attr):
        near = [n for n in dir(owner) if not n.startswith("_")]
        raise EmberConfigError(f"module {module} has no {attr!r}: {registry.suggest(attr, near)}")
    return getattr(owner, attr)


def _provides(name: str, module: ModuleType, found: dict[str, registry.PluginInfo]) -> str:
    """For an installed plugin whose entry point is a module: the plugins it adds."""
    mine = sorted((i for i in found.values() if i.cls.__module__.startswith(module.__name__)), key=lambda i: i.name)
    lines = [f"  {i.name}  ({i.kind})  {i.description}" for i in mine] or ["  (no plugin classes)"]
    return (f"{name} (installed plugin, module {module.__name__}) adds:\n" + "\n".join(lines) +
            "\n\n`ember plugins show NAME` prints one's options.\n")
