"""The embedded default corpus: real English prose that every Python install carries offline.

It is the reference text of the Python documentation shipped in `pydoc_data.topics` (about
460 KB: the language reference and library topics), followed by the docstrings of a fixed
list of pure-Python standard-library modules. Deterministic for a given Python version.
"""

from __future__ import annotations

import importlib
import inspect
from functools import lru_cache

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
    from pydoc_data.topics import topics

    parts = [topics[key].strip() for key in sorted(topics)]
    for module_name in DOCSTRING_MODULES:
        parts += _docstrings(module_name)
    return "\n\n".join(parts).encode("utf-8")
