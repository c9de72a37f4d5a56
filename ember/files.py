"""Files that are never half-written (write to a temporary file beside the target, then rename), and
checkpoints read without running code."""

from __future__ import annotations

import ctypes
import errno as errno_codes
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from ember.errors import EmberConfigError, EmberDataError, first_line

log = logging.getLogger(__name__)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in path's folder; it replaces path when the block ends without error and is
    deleted otherwise, so a crash or bad input mid-write leaves path as it was.

    The result keeps what the user set on the file it replaces: a symlink is written through (its target is
    replaced, the link stays), the old file's mode is kept, and a new file gets the usual mode (0666 less the
    umask), not the temporary file's private 0600."""
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_folder(new: Path, old: Path):
    """Put the folder `new` at the name `old` (an existing folder, or none) and delete what was there. On Linux the
    two folders swap names in one step (renameat2 RENAME_EXCHANGE), so a crash at any moment leaves `old` whole,
    either the previous folder or the new one; elsewhere the previous folder is renamed aside first, and put back
    if the new one cannot take its name. Once the new folder has the name, a previous copy that cannot be deleted
    is left beside it with a warning: the replacement itself succeeded."""
    if not old.exists():
        new.rename(old)
        return
    if _exchange(new, old):
        _delete_previous(new, old)  # `new` now holds the previous folder
        return
    aside = Path(tempfile.mkdtemp(dir=old.parent, prefix=f".{old.name}.old-"))
    old.replace(aside / old.name)
    try:
        new.rename(old)
    except BaseException:
        (aside / old.name).replace(old)
        aside.rmdir()
        raise
    _delete_previous(aside, old)


def _delete_previous(folder: Path, name: Path):
    try:
        shutil.rmtree(folder)
    except OSError as err:
        log.warning("%s is replaced, but its previous copy %s could not be deleted (%s): delete it by hand", name,
                    folder, err)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names of two paths atomically (Linux renameat2 with RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (errno_codes.EINVAL, errno_codes.ENOSYS, errno_codes.EOPNOTSUPP):  # kernel or file system lacks it
        return False
    raise OSError(errno, os.strerror(errno), str(b))


def check_writable(path: str | Path, option: str):
    """Stop now, naming `option`, when `path` could not be written later (its folder missing or read-only, or
    `path` a folder): a long job finds out before it runs, not when it saves."""
    path = Path(path).expanduser()
    folder = path.parent
    if path.is_dir():
        raise EmberConfigError(f"{option} {path} is a folder: give a file path")
    if not folder.is_dir():
        raise EmberConfigError(f"{option} {path}: the folder {folder} does not exist; create it first")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise EmberConfigError(f"{option} {path} cannot be written ({err}): choose a writable folder") from err


def current_umask() -> int:
    """The process umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str):
    """Write text to path through `atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint's dict, read with torch's weights-only unpickler: tensors, containers and plain values load;
    anything that would run code (a pickled class or function) is refused, as is a file that is not a checkpoint
    (truncated, empty, random bytes), with one message that names the file."""
    try:
        saved = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (garbage makes the unpickler raise anything: IndexError, EOFError, ...)
        reason = first_line(err)
        raise EmberDataError(f"{path} is not a checkpoint Ember can read safely ({reason}). Give a .ckpt that "
                             "`ember fit` wrote; Ember never unpickles code from a file, so a trusted checkpoint of "
                             "another kind must be re-saved as a dict of tensors and plain values") from err
    if not isinstance(saved, dict):
        raise EmberDataError(f"{path} holds a {type(saved).__name__}, not a checkpoint (a dict with a state_dict)")
    return saved
