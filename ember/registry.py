"""Plugin discovery by import: what LightningCLI and `ember plugins show` need.

The base classes in `ember.base` are the registry: jsonargparse resolves `class_path: Name`
among the imported subclasses of a slot's type. This module makes sure they are imported
(built-ins, then every installed distribution's `ember.plugins` entry points) before the
CLI parses anything, and lists them by kind. A plugin that fails to import is reported by
name; the others still work. Two different classes with the same short name are an error,
because `class_path: Name` could not tell them apart.

Importing the plugins imports Lightning and torch (seconds); `ember plugins` lists them from their source instead
(ember.catalog), and tests/test_registry.py holds the two lists equal.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import pkgutil
from dataclasses import dataclass
from importlib.metadata import entry_points

from lightning.pytorch import Callback, LightningDataModule

from ember.base import PLUGIN_KINDS, Anchor, MemoryTask, RecursionNetwork
from ember.catalog import BUILTIN_PACKAGES, ENTRY_POINT_GROUP
from ember.errors import EmberConfigError

log = logging.getLogger(__name__)
# Listed beside the plugin kinds so `ember plugins` shows every name a config can use (ember.catalog.EXTRA_KINDS
# names the same classes by their dotted paths).
EXTRA_KINDS = {"data": LightningDataModule, "callback": Callback, "task": MemoryTask,
               "network": RecursionNetwork, "anchor": Anchor}


@dataclass(frozen=True)
class PluginInfo:
    name: str
    kind: str
    cls: type
    description: str

    @property
    def class_path(self) -> str:
        return f"{self.cls.__module__}.{self.cls.__qualname__}"


_failures: dict[str, str] = {}
_loaded = False


def load_plugins(force: bool = False) -> dict[str, str]:
    """Import the built-in plugin packages and the entry points; returns {name: error} of failures."""
    global _loaded
    if _loaded and not force:
        return dict(_failures)
    _failures.clear()
    for package in BUILTIN_PACKAGES:
        _import_package(package)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as err:  # any import error of a third-party plugin must not break the rest
            _failures[ep.name] = f"{type(err).__name__}: {err}"
            log.warning("plugin %r (%s) failed to import and is unavailable: %s: %s. The other plugins "
                        "still work; fix or uninstall its package.", ep.name, ep.value, type(err).__name__, err)
    _loaded = True
    plugins()  # raises on duplicate names
    return dict(_failures)


def _import_package(package: str):
    pkg = importlib.import_module(package)
    for mod in pkgutil.walk_packages(pkg.__path__, prefix=package + "."):
        try:
            importlib.import_module(mod.name)
        except Exception as err:
            _failures[mod.name] = f"{type(err).__name__}: {err}"
            log.warning("built-in plugin module %s failed to import: %s", mod.name, err)


def _subclasses(base: type):
    seen, stack = set(), list(base.__subclasses__())
    while stack:
        cls = stack.pop()
        if cls not in seen:
            seen.add(cls)
            stack.extend(cls.__subclasses__())
            yield cls


def _is_listed(cls: type, kind: str) -> bool:
    if inspect.isabstract(cls) or cls.__name__.startswith("_"):
        return False
    if kind in EXTRA_KINDS:  # only Ember's own data modules and callbacks, not Lightning's internals
        top = cls.__module__.split(".")[0]
        return cls.__module__.startswith(("ember.data_modules", "ember.callbacks", "ember.plugins")) or top not in {
            "ember", "lightning", "pytorch_lightning"}
    return True


def plugins() -> dict[str, PluginInfo]:
    """Every importable plugin by short name. Raises EmberConfigError on duplicate short names."""
    found: dict[str, PluginInfo] = {}
    for kind, base in {**PLUGIN_KINDS, **EXTRA_KINDS}.items():
        for cls in _subclasses(base):
            if not _is_listed(cls, kind):
                continue
            info = PluginInfo(cls.__name__, kind, cls, _first_line(cls.__doc__))
            other = found.get(info.name)
            if other is not None and other.cls is not cls:
                raise EmberConfigError(f"two plugins are named {info.name!r}: {other.class_path} and "
                                       f"{info.class_path}; rename one (class_path: Name must be unambiguous)")
            found[info.name] = info
    return found


def _first_line(doc: str | None) -> str:
    return (inspect.cleandoc(doc).splitlines() or [""])[0] if doc else "(no description)"


def suggest(name: str, known: list[str] | None = None) -> str:
    """'did you mean ...' text for an unknown plugin name."""
    known = known if known is not None else list(plugins())
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    lowered = [k for k in known if k.lower() == name.lower()]
    close = list(dict.fromkeys(lowered + close))
    return f"did you mean {' or '.join(close)}?" if close else "run `ember plugins` to list the names"
