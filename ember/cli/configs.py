"""`ember configs list|cp`: the configs shipped inside the package, for a user without the repository.

    ember configs list [--under debug]          every shipped config, by name (quickstart, debug/quickstart, ...)
    ember configs cp NAME DEST [--overwrite]    copy one to DEST (a file, or a folder that exists)

A name is the config's path under configs/ without `.yaml` (`memory/mqar`); `configs/memory/mqar.yaml` and
`mqar.yaml`-style spellings are accepted too. Copies are written atomically and never replace a file unless asked.
"""

from __future__ import annotations

import difflib
import shutil
import sys
from importlib import resources
from pathlib import Path

from jsonargparse import ArgumentParser

from ember.errors import EmberConfigError
from ember.files import atomic_path


def shipped() -> dict[str, Path]:
    """{name: file} of every YAML under the installed `ember.configs` package, sorted by name."""
    root = Path(str(resources.files("ember.configs")))
    return {str(f.relative_to(root).with_suffix("")): f for f in sorted(root.rglob("*.yaml"))}


def find(name: str, configs: dict[str, Path]) -> Path:
    """The shipped config `name` names, or a message with the closest names."""
    key = name.removeprefix("configs/").removesuffix(".yaml").removesuffix(".yml")
    if key in configs:
        return configs[key]
    close = difflib.get_close_matches(key, list(configs), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise EmberConfigError(f"no shipped config named {name!r}: {hint}`ember configs list` shows them all")


def copy(source: Path, dest: Path, overwrite: bool) -> Path:
    """Copy `source` to `dest` (or into it when it is a folder); refuses to replace a file unless `overwrite`."""
    target = dest / source.name if dest.is_dir() else dest
    if target.exists() and not overwrite:
        raise EmberConfigError(f"{target} exists: choose another DEST, or pass --overwrite to replace it")
    if not target.parent.is_dir():
        raise EmberConfigError(f"the folder {target.parent} does not exist: create it first, or choose another DEST")
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return target


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="ember configs", description="The configs shipped inside the package, for a user "
                            "without the repository: `ember configs list`, then `ember configs cp NAME DEST` and "
                            "`ember fit --config DEST`.")
    sub = parser.add_subcommands(required=True, dest="action")
    listing = ArgumentParser(description="List the shipped configs by name.")
    listing.add_argument("--under", default="", help="only those under this folder, e.g. debug or memory")
    cp = ArgumentParser(description="Copy a shipped config to DEST, to edit and run with `ember fit --config DEST`.")
    cp.add_argument("name", help="the config's name, as `ember configs list` prints it (e.g. quickstart)")
    cp.add_argument("dest", type=str, help="the file to write, or an existing folder to write NAME.yaml into")
    cp.add_argument("--overwrite", action="store_true", help="replace DEST if it exists (default: refuse)")
    sub.add_subcommand("list", listing, help="list the shipped configs")
    sub.add_subcommand("cp", cp, help="copy one shipped config to DEST")
    args = parser.parse_args(argv)
    configs = shipped()
    if args.action == "list":
        names = [n for n in configs if not args.list.under or n.startswith(args.list.under.strip("/") + "/")]
        if not names:
            raise EmberConfigError(f"no shipped config under {args.list.under!r}: `ember configs list` shows them all")
        sys.stdout.write("\n".join(names) + "\n")
        return 0
    target = copy(find(args.cp.name, configs), Path(args.cp.dest).expanduser(), args.cp.overwrite)
    sys.stdout.write(f"wrote {target}\n  train it: ember fit --config {target}\n")
    return 0
