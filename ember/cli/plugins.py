"""`ember plugins [show NAME]`: the registered plugins by kind, or one plugin's options."""

from __future__ import annotations

import inspect
import sys

from jsonargparse import ArgumentParser

from ember import registry
from ember.errors import EmberConfigError


def main(argv: list[str]) -> int:
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
    parser = ArgumentParser(prog=f"class_path: {info.name}", description=None, add_help=False)
    parser.add_class_arguments(info.cls, fail_untyped=False)
    doc = inspect.cleandoc(info.cls.__doc__ or "").split("\n    Args:")[0].split("\nArgs:")[0]
    header = f"{info.name}  ({info.kind}; {info.class_path})\n\n{doc}\n\nOptions (init_args):\n"
    text = parser.format_help()
    sys.stdout.write(header + text[text.index("\n\n") + 2 :])
    return 0
