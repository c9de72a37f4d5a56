"""The manifest of a shard folder (`ember-shards.json`), shared by text and audio shards, and the
temporary folder that makes writing one all-or-nothing.

A manifest holds "format" (FORMAT), the shard names of the "train" and "val" splits, and what its
writer adds. Text manifests name no "kind"; every other kind names itself ("audio-prosody").
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from ember.errors import EmberDataError
from ember.files import current_umask, replace_folder

MANIFEST = "ember-shards.json"
FORMAT = 1


@contextmanager
def built_folder(out: Path) -> Iterator[Path]:
    """A temporary folder beside `out` that replaces `out` when the block succeeds and is removed if it
    fails, so a shard folder is never half-written, and a crash while it replaces `out` leaves the previous
    folder or the new one at that name (ember.files.replace_folder)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp's folder is private (0700): give it a new folder's usual mode
        yield tmp
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_out(out: Path, overwrite: bool):
    """Refuse an --out that is a file, or a folder that holds something while `overwrite` is off."""
    if out.exists() and not out.is_dir():
        raise EmberDataError(f"--out {out} is a file: give a folder (new or empty) for the shards")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise EmberDataError(f"{out} exists and is not empty: choose another --out or pass --overwrite")


def read_manifest(folder: Path, kind: Optional[str] = None) -> dict:
    """The manifest of a shard folder, checked: readable, of FORMAT (and of `kind` when given), and every
    shard it lists present. kind None reads text shards. Raises EmberDataError naming the command that
    rewrites the folder."""
    path = folder / MANIFEST
    command = f"ember data prepare {kind or 'text'}"
    rewrite = (f"rewrite the shards with `{command} --input ... --out ...`" if kind is None
               else f"write the folder with `{command} --out DIR`")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:  # ValueError: not JSON, or not UTF-8 text
        raise EmberDataError(f"{path} is not a readable shard manifest ({err}): {rewrite}") from err
    problem = _layout_problem(manifest)
    if problem:
        raise EmberDataError(f"{path} is not a shard manifest Ember wrote ({problem}): {rewrite}")
    if kind is None and manifest.get("format") != FORMAT:
        raise EmberDataError(f"{path} has format {manifest.get('format')}, this Ember reads format {FORMAT}: "
                             f"rewrite the shards with `{command}`")
    if kind is not None and (manifest.get("kind") != kind or manifest.get("format") != FORMAT):
        raise EmberDataError(f"{folder} holds {manifest.get('kind', 'text')} shards (format {manifest.get('format')})"
                             f", not {kind} format {FORMAT}: write it with `{command}`")
    for split in ("train", "val"):
        missing = [s for s in manifest[split]["shards"] if not (folder / s).is_file()]
        if missing:
            raise EmberDataError(f"shard folder {folder} lacks {missing[:3]} listed in its manifest: "
                                 f"copy the whole folder or rewrite it with `{command}`")
    return manifest


def _layout_problem(manifest) -> Optional[str]:
    """What keeps a parsed manifest from listing shards: not an object, a split without its "shards" list, or a
    shard that is not a file name of the folder (a path elsewhere, a number); None when it lists them."""
    if not isinstance(manifest, dict):
        return f"it holds a JSON {type(manifest).__name__}, not an object"
    for split in ("train", "val"):
        shards = manifest.get(split, {}).get("shards") if isinstance(manifest.get(split), dict) else None
        if not isinstance(shards, list):
            return f'its "{split}" entry has no list of "shards"'
        odd = [s for s in shards if not isinstance(s, str) or not s or Path(s).name != s or s in (".", "..")]
        if odd:
            return f'"{split}" lists {odd[:3]}, which are not file names in the folder'
    return None
