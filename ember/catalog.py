"""The plugin list read from the source, without importing it: what `ember plugins` prints, at once.

Importing the plugins (ember.registry) imports Lightning and torch, which takes seconds. This module parses the
built-in packages' files instead (ember.plugins, ember.data_modules, ember.callbacks) with `ast`, and finds what
ember.registry finds: each class whose bases lead to a kind's base class (the PLUGIN_KINDS of ember.base, and
EXTRA_KINDS below), followed through the scanned files and the Ember modules they import; a class is left out
when it is abstract (an ABC with a method still abstract) or its name starts with "_". Its description is the first
line of its docstring. Installed third-party plugins (the `ember.plugins` entry points) are listed by name and
value, not imported. tests/test_registry.py holds this list equal to the imported registry's.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import pkgutil
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from ember.errors import EmberConfigError

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "ember.plugins"
BUILTIN_PACKAGES = ("ember.plugins", "ember.data_modules", "ember.callbacks")
# The kinds listed beside ember.base's PLUGIN_KINDS, by the dotted path of their base class, so `ember plugins`
# shows every name a config can use (ember.registry.EXTRA_KINDS holds the classes themselves).
EXTRA_KINDS = {"data": "lightning.pytorch.LightningDataModule", "callback": "lightning.pytorch.Callback",
               "task": "ember.base.MemoryTask", "network": "ember.base.RecursionNetwork",
               "anchor": "ember.base.Anchor"}
LIGHTNING = ("lightning", "pytorch_lightning")


@dataclass(frozen=True)
class Entry:
    """One listed plugin, as ember.registry.PluginInfo lists it, without the class."""

    name: str
    kind: str
    class_path: str
    description: str


@dataclass
class _Class:
    """A class definition as written: its bases unresolved (dotted names as spelled in its module)."""

    module: str
    name: str
    bases: list[str]
    doc: str | None
    defined: set[str] = field(default_factory=set)  # every name its body binds
    abstract: set[str] = field(default_factory=set)  # the methods its body marks @abstractmethod
    abc: bool = False  # metaclass=ABCMeta in its own definition
    kind: str | None = None  # its `kind = "..."` attribute (ember.base's kind classes)


@dataclass
class _Module:
    names: dict[str, str]  # what each imported name refers to, as a dotted path
    classes: dict[str, _Class]
    tree: ast.Module


def kinds() -> list[str]:
    """Every kind in listing order: ember.base's PLUGIN_KINDS, then EXTRA_KINDS."""
    return list(_plugin_kinds().values()) + list(EXTRA_KINDS)


def builtin_plugins() -> dict[str, Entry]:
    """The listed classes of the built-in packages by short name. Raises EmberConfigError on duplicate names."""
    found: dict[str, Entry] = {}
    for module in _builtin_modules():
        for cls in _parse(module).classes.values():
            kind = _kind(cls)
            if kind is None or cls.name.startswith("_") or _is_abstract(cls):
                continue
            entry = Entry(cls.name, kind, f"{cls.module}.{cls.name}", _first_line(cls.doc))
            other = found.get(entry.name)
            if other is not None:
                raise EmberConfigError(f"two plugins are named {entry.name!r}: {other.class_path} and "
                                       f"{entry.class_path}; rename one (class_path: Name must be unambiguous)")
            found[entry.name] = entry
    return found


def installed() -> list[EntryPoint]:
    """The installed third-party plugins: the `ember.plugins` entry points (name, value), none imported."""
    return list(entry_points(group=ENTRY_POINT_GROUP))


def _first_line(doc: str | None) -> str:
    return (doc.splitlines() or [""])[0] if doc else "(no description)"


# ---- finding and parsing Ember's source ---------------------------------------------------------------------
@cache
def _roots() -> dict[str, Path]:
    """The folder of each top package (ember and the three that install beneath it from their own folders), found
    without importing any of them but `ember` itself."""
    roots = {}
    for package in ("ember", *BUILTIN_PACKAGES):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            roots[package] = Path(list(spec.submodule_search_locations)[0])
    return roots


def _file(module: str) -> Path | None:
    """The source file of Ember module `module`, or None when it is not one."""
    root = max((r for r in _roots() if module == r or module.startswith(r + ".")), key=len, default=None)
    if root is None:
        return None
    folder = _roots()[root].joinpath(*module[len(root) + 1 :].split(".")) if module != root else _roots()[root]
    for file in (folder / "__init__.py", folder.with_suffix(".py")):
        if file.is_file():
            return file
    return None


def _builtin_modules() -> list[str]:
    """Every module of the built-in packages (the packages and their subpackages too), as pkgutil walks them."""
    out = []

    def walk(package: str, folder: Path):
        out.append(package)
        for info in pkgutil.iter_modules([str(folder)]):
            name = f"{package}.{info.name}"
            if info.ispkg:
                walk(name, folder / info.name)
            else:
                out.append(name)

    for package in BUILTIN_PACKAGES:
        if package in _roots():
            walk(package, _roots()[package])
    return out


@cache
def _parse(module: str) -> _Module | None:
    """The imports and the top-level classes of Ember module `module`; None when it is not an Ember module."""
    file = _file(module)
    if file is None:
        return None
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
    except (SyntaxError, ValueError, OSError) as err:  # as ember.registry does with a module that fails to import
        log.warning("plugin module %s cannot be read and is not listed: %s: %s", module, type(err).__name__, err)
        tree = ast.Module(body=[], type_ignores=[])
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    names: dict[str, str] = {}
    classes: dict[str, _Class] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            source = _absolute(node, package)
            names |= {a.asname or a.name: f"{source}.{a.name}" for a in node.names if a.name != "*"}
        elif isinstance(node, ast.Import):
            names |= {a.asname: a.name for a in node.names if a.asname}
            names |= {a.name.split(".")[0]: a.name.split(".")[0] for a in node.names if not a.asname}
        elif isinstance(node, ast.ClassDef):
            classes[node.name] = _class(node, module)
    return _Module(names, classes, tree)


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _class(node: ast.ClassDef, module: str) -> _Class:
    cls = _Class(module, node.name, [b for b in map(_dotted, node.bases) if b], ast.get_docstring(node))
    cls.abc = any(k.arg == "metaclass" and _dotted(k.value).endswith("ABCMeta") for k in node.keywords)
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            cls.defined.add(item.name)
            if any(_dotted(d).endswith("abstractmethod") for d in item.decorator_list):
                cls.abstract.add(item.name)
        elif isinstance(item, (ast.Assign, ast.AnnAssign)) and item.value is not None:
            targets = item.targets if isinstance(item, ast.Assign) else [item.target]
            bound = {t.id for t in targets if isinstance(t, ast.Name)}
            cls.defined |= bound
            if "kind" in bound and isinstance(item.value, ast.Constant) and isinstance(item.value.value, str):
                cls.kind = item.value.value
    return cls


def _dotted(node: ast.expr) -> str:
    """`a.b.C` for a name or an attribute chain (a subscript `C[int]` is C); "" for anything else."""
    if isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else ""
    return ""


# ---- following the bases --------------------------------------------------------------------------------------
def _resolve(cls: _Class, spelled: str) -> _Class | str:
    """The class a base spelled `spelled` in `cls`'s module refers to: an Ember class, or the dotted path of a
    class outside Ember (as imported: `lightning.pytorch.Callback`, `abc.ABC`)."""
    module = _parse(cls.module)
    head, _, rest = spelled.partition(".")
    if head in module.classes and module.classes[head] is not cls and not rest:  # `class X(X)` subclasses an import
        return module.classes[head]
    path = ".".join(filter(None, (module.names[head], rest))) if head in module.names else spelled
    return _find(path, depth=0)


def _find(path: str, depth: int) -> _Class | str:
    """The Ember class at dotted `path`, following re-exports (`from x import Y` in the module named); else path."""
    owner, _, name = path.rpartition(".")
    module = _parse(owner) if owner and depth < 10 else None
    if module is None:
        return path
    if name in module.classes:
        return module.classes[name]
    return _find(module.names[name], depth + 1) if name in module.names else path


def _bases(cls: _Class) -> list[_Class | str]:
    return [_resolve(cls, b) for b in cls.bases]


def _mro(cls: _Class | str) -> list[_Class | str]:
    """Depth-first, left to right, each class at its last place: C3's order for the class trees Ember writes. A
    class outside Ember ends its branch (its own bases are not read)."""
    order: list[_Class | str] = []

    def visit(c, path: tuple[int, ...]):
        order.append(c)
        for base in _bases(c) if isinstance(c, _Class) and id(c) not in path else ():  # a circle ends its branch
            visit(base, (*path, id(c)))

    visit(cls, ())
    keys = [c if isinstance(c, str) else id(c) for c in order]
    return [c for i, c in enumerate(order) if keys[i] not in keys[i + 1 :]]


@cache
def _plugin_kinds() -> dict[str, str]:
    """{base class name: kind} of ember.base's PLUGIN_KINDS, in its order (read from the tuple it is built from)."""
    base = _parse("ember.base")
    for node in base.tree.body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if any(isinstance(t, ast.Name) and t.id == "PLUGIN_KINDS" for t in targets):
            tuples = [n for n in ast.walk(node.value) if isinstance(n, ast.Tuple)]
            names = [e.id for e in tuples[0].elts if isinstance(e, ast.Name)] if tuples else []
            return {name: base.classes[name].kind for name in names}
    raise EmberConfigError("ember/base.py defines no PLUGIN_KINDS; `ember plugins` cannot list the plugin kinds")


def _root_kind(base: _Class | str) -> str | None:
    """The kind whose base class `base` is, or None."""
    if isinstance(base, _Class):
        if base.module == "ember.base" and base.name in _plugin_kinds():
            return _plugin_kinds()[base.name]
        return next((k for k, p in EXTRA_KINDS.items() if p == f"{base.module}.{base.name}"), None)
    module, _, name = base.rpartition(".")
    if module.split(".")[0] not in LIGHTNING:
        return None
    if ".callbacks" in module:  # every class of lightning.pytorch.callbacks is a Callback (ModelCheckpoint, ...)
        return "callback"
    return next((k for k, p in EXTRA_KINDS.items() if p.startswith(LIGHTNING) and p.rpartition(".")[2] == name), None)


def _kind(cls: _Class) -> str | None:
    """The kind `cls` is listed under: the last in listing order whose base class it derives from (ember.registry
    lists a class under every kind it derives from, each replacing the one before)."""
    reached = {_root_kind(c) for c in _mro(cls)[1:]}
    return next((k for k in reversed(kinds()) if k in reached), None)


def _is_abstract(cls: _Class) -> bool:
    """inspect.isabstract: an ABC (abc.ABC or ABCMeta somewhere in its bases) whose first definition of some
    method, in method resolution order, is still abstract."""
    mro = _mro(cls)
    if not any(c == "abc.ABC" or (isinstance(c, _Class) and c.abc) for c in mro):
        return False
    own = [c for c in mro if isinstance(c, _Class)]
    for name in set().union(*(c.abstract for c in own)):
        first = next(c for c in own if name in c.defined)
        if name in first.abstract:
            return True
    return False
