"""The manifest of a shard folder (`ember-shards.json`), shared by text and audio shards; the shards of each split
of a folder, folder URL or shard URL pattern (data_modules/remote.py); and where `ember data prepare` writes: a
folder (through a temporary folder that makes writing it all-or-nothing) or a `pipe:COMMAND` per file.

A manifest holds "format" (FORMAT), the shard names of the "train" and "val" splits, and what its
writer adds. Text manifests name no "kind"; every other kind names itself ("audio-prosody").
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from webdataset.gopen import gopen

from ember.data_modules.remote import (
    PIPE,
    expand_shard_urls,
    fetch_manifest,
    file_url,
    is_shard_url,
    is_url,
    local_or_url,
)
from ember.errors import EmberDataError
from ember.files import current_umask, replace_folder

MANIFEST = "ember-shards.json"
FORMAT = 1
PIPE_OUT_EXAMPLE = "pipe:aws s3 cp - s3://bucket/shards/{name}"


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


class ShardOut:
    """Where `ember data prepare` writes the files of a shard folder: `target` with "{name}" standing for each
    file's name, a path in a folder or a pipe: command run once per file with the file on its stdin; written
    with webdataset's gopen (as its ShardWriter writes shards)."""

    def __init__(self, target: str):
        self.target = target

    def pattern(self, split: str) -> str:
        """The ShardWriter pattern of a split's shards: its %06d numbers them (any other % of target escaped)."""
        return self.target.replace("%", "%%").replace("{name}", f"{split}-%06d.tar")

    def write(self, name: str, data: bytes):
        """Write one whole file, e.g. the manifest."""
        with gopen(self.target.replace("{name}", name), "wb") as sink:
            sink.write(data)


def check_output(out: str | Path, overwrite: bool):
    """Refuse an --out that cannot take a shard folder: a file, a non-empty folder without overwrite, a pipe:
    command without {name}, or a URL (not written over the network by Ember: a pipe to a client is)."""
    if is_url(out) and not str(out).startswith(PIPE):
        raise EmberDataError(f"--out {out}: Ember writes shards to a folder or to a pipe:COMMAND; upload over HTTP "
                             f"with a pipe such as 'pipe:curl -fsT - {out.rstrip('/')}/{{name}}'")
    if is_url(out) and "{name}" not in out:
        raise EmberDataError(f"--out {out} has no {{name}}: a pipe: command runs once per file (each shard, then "
                             f"{MANIFEST}) and {{name}} stands for that file's name, e.g. '{PIPE_OUT_EXAMPLE}'")
    if not is_url(out):
        check_out(Path(out), overwrite)


@contextmanager
def shard_output(out: str | Path) -> Iterator[ShardOut]:
    """Where to write a shard folder, checked by check_output.

    A folder is built in a temporary folder beside it and renamed when the block succeeds (all or nothing, the
    previous folder replaced). A pipe:COMMAND runs once per file, the manifest last, so a failed run leaves the
    destination without a manifest; a failing command raises one EmberDataError.
    """
    if not is_url(out):
        with built_folder(Path(out)) as tmp:
            yield ShardOut(str(tmp / "{name}"))
        return
    try:
        yield ShardOut(out)
    except OSError as err:  # the command exited with a failing status, or before reading all its input
        status = re.search(r"exit (-?\d+)", str(err))
        what = (f"a command exited with status {status.group(1)}" if status else
                f"a command stopped before reading all its input: {err}")
        raise EmberDataError(f"--out {out} failed ({what}): run the command in a shell with a file on its stdin to "
                             "see why, then prepare again") from err


def read_manifest(folder: Path | str, kind: Optional[str] = None) -> dict:
    """The manifest of a shard folder or folder URL, checked: readable, of FORMAT (and of `kind` when given), and
    (for a local folder) every shard it lists present; a URL's shards are checked as they are read. kind None
    reads text shards. Raises EmberDataError naming the command that rewrites the folder."""
    command = f"ember data prepare {kind or 'text'}"
    rewrite = (f"rewrite the shards with `{command} --input ... --out ...`" if kind is None
               else f"write the folder with `{command} --out DIR`")
    path, manifest = _load(folder, rewrite)
    problem = _layout_problem(manifest)
    if problem:
        raise EmberDataError(f"{path} is not a shard manifest Ember wrote ({problem}): {rewrite}")
    if kind is None and manifest.get("format") != FORMAT:
        raise EmberDataError(f"{path} has format {manifest.get('format')}, this Ember reads format {FORMAT}: "
                             f"rewrite the shards with `{command}`")
    if kind is not None and (manifest.get("kind") != kind or manifest.get("format") != FORMAT):
        raise EmberDataError(f"{folder} holds {manifest.get('kind', 'text')} shards (format {manifest.get('format')})"
                             f", not {kind} format {FORMAT}: write it with `{command}`")
    for split in ("train", "val") if not is_url(folder) else ():
        missing = [s for s in manifest[split]["shards"] if not (folder / s).is_file()]
        if missing:
            raise EmberDataError(f"shard folder {folder} lacks {missing[:3]} listed in its manifest: "
                                 f"copy the whole folder or rewrite it with `{command}`")
    return manifest


def _load(folder: Path | str, rewrite: str) -> tuple[str | Path, object]:
    """(where it is, the parsed JSON) of the manifest of a local folder or a folder URL (fetched)."""
    if is_url(folder):
        return fetch_manifest(folder)
    path = folder / MANIFEST
    try:
        return path, json.loads(path.read_text())
    except (OSError, ValueError) as err:  # ValueError: not JSON, or not UTF-8 text
        raise EmberDataError(f"{path} is not a readable shard manifest ({err}): {rewrite}") from err


def shard_splits(path: str | Path, val_path: Optional[str] = None, kind: Optional[str] = None) -> dict[str, list[str]]:
    """The shards of the "train" and "val" splits as paths or URLs that webdataset's gopen opens.

    A local folder or a folder URL lists them in its manifest (read and checked, of `kind`); a shard URL (pattern
    or pipe:, data_modules/remote.py) is the train split and val_path the val split: with no manifest, nothing
    checks their kind before their samples are read.
    """
    if is_shard_url(path):
        return {"train": expand_shard_urls(path), "val": expand_shard_urls(val_path)}
    folder = local_or_url(path)
    manifest = read_manifest(folder, kind)
    where = (lambda name: file_url(folder, name)) if is_url(folder) else (lambda name: str(folder / name))
    return {split: [where(name) for name in manifest[split]["shards"]] for split in ("train", "val")}


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
