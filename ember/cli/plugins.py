"""`ember plugins [show NAME]`: the plugins by kind, or one class's options.

The list is read from the plugins' source (ember.catalog) and imports neither Lightning nor torch: it answers in a
fraction of a second. `show` imports what it shows (ember.cli.plugins_show), which takes seconds.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ember import catalog

DESCRIPTION = """\
List the plugins by kind, with the first line of each one's docstring, or show one class's options.

The list reads the built-in plugins' source and the installed packages' `ember.plugins` entry points without
importing them, so it answers at once; a plugin whose module cannot be imported is still listed, and `show`
says why it fails. `show NAME` imports NAME and prints its description and options (init_args) for every name
a config's `class_path:` can use: a plugin, EmberModel, EmberMLFlowLogger, a Lightning callback or logger, a
torch optimizer or lr scheduler, an installed plugin's entry-point name, or a dotted path
(lightning.pytorch.strategies.FSDPStrategy)."""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ember plugins", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="?", default="list", choices=["list", "show"], help="list (default) or show")
    parser.add_argument("name", nargs="?", help="for `show`: a class_path's value (short name or dotted path)")
    args = parser.parse_args(argv)
    if args.action == "show":
        if not args.name:
            parser.error("`ember plugins show` needs a NAME, e.g. `ember plugins show NMLBackbone`")
        # `show` imports the plugins, Lightning and torch (seconds): only it pays for them, as main.py's commands do
        return importlib.import_module("ember.cli.plugins_show").show(args.name)
    sys.stdout.write(listing(catalog.builtin_plugins(), catalog.installed()))
    return 0


def listing(found: dict[str, catalog.Entry], installed: list) -> str:
    """The text of `ember plugins`: each kind's plugins by name, then the installed (entry-point) plugins."""
    width = max((len(n) for n in [*found, *(ep.name for ep in installed)]), default=10) + 2
    out = []
    for kind in catalog.kinds():
        out.append(f"{kind}:")
        entries = sorted((e for e in found.values() if e.kind == kind), key=lambda e: e.name)
        out += [f"  {e.name:<{width}}{e.description}" for e in entries] or ["  (none installed)"]
    if installed:
        out.append("installed (entry points, not imported):")
        out += [f"  {ep.name:<{width}}{ep.value}  (installed plugin; `ember plugins show {ep.name}` imports it)"
                for ep in sorted(installed, key=lambda ep: ep.name)]
    out.append("\n`ember plugins show NAME` prints a plugin's options; use it in YAML as `class_path: NAME`.")
    return "\n".join(out) + "\n"
