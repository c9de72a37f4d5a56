"""Training text: the embedded default corpus, or the text files a user points at.

The default corpus is real English prose that every Python install carries offline: the
reference text of the Python documentation shipped in `pydoc_data.topics` (about 460 KB: the
language reference and library topics), followed by the docstrings of a fixed list of
pure-Python standard-library modules. Deterministic for a given Python version.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from functools import lru_cache
from pathlib import Path
from pydoc_data.topics import topics

from ember.errors import EmberDataError

log = logging.getLogger(__name__)

# Pure-Python modules with long prose docstrings and no import side effects.
DOCSTRING_MODULES = (
    "argparse", "ast", "asyncio", "base64", "bisect", "calendar", "collections", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "doctest", "email",
    "enum", "fractions", "ftplib", "functools", "getopt", "gettext", "glob", "heapq", "hmac", "html",
    "http.client", "http.server", "imaplib", "inspect", "ipaddress", "json", "logging", "mailbox",
    "mimetypes", "multiprocessing", "numbers", "optparse", "os", "pathlib", "pickle", "pickletools",
    "pprint", "pydoc", "queue", "random", "re", "sched", "secrets", "selectors", "shlex", "shutil",
    "smtplib", "socket", "socketserver", "statistics", "string", "subprocess", "tarfile", "tempfile",
    "textwrap", "threading", "timeit", "tokenize", "trace", "traceback", "types", "typing",
    "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "weakref", "zipfile",
)


def _docstrings(module_name: str) -> list[str]:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return []
    docs = [inspect.getdoc(module) or ""]
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        docs.append(inspect.getdoc(obj) or "")
        if inspect.isclass(obj):
            docs += [inspect.getdoc(m) or "" for n, m in sorted(vars(obj).items())
                     if not n.startswith("_") and callable(m)]
    return [d for d in docs if len(d) > 40]


@lru_cache(maxsize=1)
def builtin_corpus() -> bytes:
    """The default training text as UTF-8 bytes (about 1 MB on Python 3.11)."""
    parts = [topics[key].strip() for key in sorted(topics)]
    for module_name in DOCSTRING_MODULES:
        parts += _docstrings(module_name)
    return "\n\n".join(parts).encode("utf-8")


def read_text_files(path: Path) -> bytes:
    """Bytes of a text file, or of every text file under a directory (sorted, binary files skipped)."""
    if not path.exists():
        raise EmberDataError(f"data path {path} does not exist: point data.path at a text file, a folder of "
                             "text files, or shards from `ember data prepare text` (null uses the built-in corpus)")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    parts = []
    for file in files:
        blob = file.read_bytes()
        if b"\x00" in blob[:65536]:
            log.info("skipping %s: not text (NUL bytes)", file)
            continue
        parts.append(blob)
    data = b"\n".join(parts)
    if not data.strip():
        raise EmberDataError(f"data path {path} holds no text ({len(files)} file(s), none with text bytes)")
    return data
