"""Shards read over the network: folder URLs, webdataset URL patterns, pipe: commands, and the reader of shards
that reports a bad one by its URL.

Where shards can live (data.path of TextBytes and ProsodyData):
    /data/shards                      a local folder holding ember-shards.json and the shards it names
    http://host:8000/shards           a folder URL (http or https) serving the same files: the manifest is fetched
                                      (urllib, CONNECT_TIMEOUT_S) and its shard names resolve against the URL
    https://host/train-{000000..000099}.tar
                                      a webdataset URL: a brace pattern (expanded by webdataset's own
                                      shardlists.expand_urls, so `a.tar::b.tar` lists work too)
    pipe:aws s3 cp s3://bucket/train-{000000..000099}.tar -
                                      a webdataset pipe: each expanded command writes one shard to its stdout
                                      (the way to stream from S3, GCS or anything with a command-line client)
A URL pattern or pipe has no manifest, so it is the train split and the val split comes from its own pattern
(data.val_path); a folder or folder URL names both splits in its manifest.

Shards are opened with webdataset's gopen. An http(s) shard is read by curl with CONNECT_TIMEOUT_S to connect and
STALL_TIMEOUT_S without data before it gives up (webdataset's own curl call retries 30 times and has no read
limit, so a stalled server would hang a loader); a pipe: command runs as written, under its own timeouts.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Optional
from urllib.parse import quote, urlsplit

from webdataset.gopen import gopen, set_options
from webdataset.shardlists import expand_urls
from webdataset.tariterators import group_by_keys, tar_file_expander

from ember.errors import EmberConfigError, EmberDataError

log = logging.getLogger(__name__)

HTTP = ("http://", "https://")
PIPE = "pipe:"
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
BAD_SHARDS = ("stop", "skip")  # what a reader does with a shard it cannot read
CONNECT_TIMEOUT_S = 10  # seconds to reach a server (manifest fetch and curl)
STALL_TIMEOUT_S = 60  # curl gives up on a shard after this long below 1 byte/s
CURL_RETRIES = 2  # curl's retries of a transient failure (a timeout, HTTP 408, 429, 5xx), not of a refused connection
MANIFEST_MAX_BYTES = 1 << 24
SHARD_ERRORS = (tarfile.TarError, OSError, EOFError, KeyError, ValueError)  # a truncated, corrupt or foreign shard
# a file (None), or a pipe that ended well or was closed early: curl's write error, SIGPIPE as a status or a signal
QUIET_EXITS = (None, 0, 23, 141, -13)
CURL_EXITS = {  # curl's exit status -> what went wrong
    6: "its host name does not resolve",
    7: "nothing accepts connections at its host and port",
    22: "the server answered with an HTTP error (404: no such file)",
    28: "timed out: no connection within {connect} s or no data for {stall} s",
    35: "the TLS handshake failed",
    56: "the connection broke while reading",
    127: "curl is not installed",
}
HTTP_EXAMPLE = "https://host/shards/train-{000000..000009}.tar"
PIPE_EXAMPLE = "pipe:aws s3 cp s3://bucket/shards/train-{000000..000009}.tar -"


class CommandFailed(OSError):
    """The command behind a pipe: or http(s) shard exited with a failing status."""

    def __init__(self, status: int):
        super().__init__(f"exit status {status}")
        self.status = status


def is_url(path) -> bool:
    """Whether data.path names shards over the network (http, https) or a pipe: command, not a local path."""
    return isinstance(path, str) and (path.startswith(HTTP) or path.startswith(PIPE))


def is_shard_url(path) -> bool:
    """Whether path is a webdataset URL of shards (a pipe:, a brace pattern, a `::` list or one .tar URL) rather
    than a folder URL that serves a manifest."""
    if not is_url(path):
        return False
    end = urlsplit(path).path
    return path.startswith(PIPE) or "{" in path or "::" in path or end.endswith(TAR_SUFFIXES)


def local_or_url(path: str | Path) -> str | Path:
    """A URL unchanged (Path would fold its `//`), a local path as an expanded Path."""
    return path if is_url(path) else Path(path).expanduser()


def file_url(folder_url: str, name: str) -> str:
    """The URL of file `name` in a folder URL (one ending in /ember-shards.json names its folder)."""
    base = folder_url.rstrip("/")
    if base.rsplit("/", 1)[-1].endswith(".json"):
        base = base.rsplit("/", 1)[0]
    return f"{base}/{quote(name)}"


def check_shard_source(path: Optional[str], val_path: Optional[str]):
    """Refuse, at construction, a data.path / data.val_path pair that cannot name a train and a val split.

    A shard URL (pattern or pipe:) needs val_path, another shard URL; a folder or folder URL names its val shards
    in its manifest and takes no val_path. Other URL schemes (s3://, gs://) are refused naming the pipe: to use.
    """
    for name, value in (("path", path), ("val_path", val_path)):
        scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", value or "")
        if scheme and not is_url(value):
            raise EmberConfigError(f"data.{name}={value}: Ember reads http(s):// URLs and pipe:COMMAND shards; "
                                   f"stream from {scheme.group(1)}:// with a pipe, e.g. '{PIPE_EXAMPLE}'")
    if val_path is not None and not is_shard_url(path):
        raise EmberConfigError(f"data.val_path={val_path} is only for a data.path that is a shard URL pattern or "
                               f"pipe: (data.path={path}: a shard folder names its val shards in its manifest, text "
                               "files are split by val_fraction): drop data.val_path")
    if is_shard_url(path) and not is_shard_url(val_path):
        raise EmberConfigError(f"data.path={path} is a shard URL with no manifest, so it holds the train split "
                               f"only: give data.val_path (now {val_path}), a shard URL of the val shards (e.g. "
                               f"{HTTP_EXAMPLE.replace('train', 'val')}), or point data.path at the folder URL "
                               "that serves ember-shards.json")
    for value in (path, val_path):
        if is_shard_url(value):
            expand_shard_urls(value)


def expand_shard_urls(pattern: str) -> list[str]:
    """The shard URLs of a webdataset URL: its braces and `::` lists expanded by webdataset (expand_urls)."""
    try:
        urls = expand_urls(pattern)
    except (AssertionError, ValueError) as err:  # AssertionError: a ${NAME} with no WDS_NAME set
        raise EmberConfigError(f"the shard URL {pattern} does not expand ({err}): write a brace range like "
                               f"{HTTP_EXAMPLE}") from err
    odd = [u for u in urls if not is_url(u) or "{" in u or "}" in u]
    if not urls or odd:
        raise EmberConfigError(f"the shard URL {pattern} expands to {odd[:2] or 'nothing'}, not http(s):// or "
                               f"pipe: URLs: write a brace range like {HTTP_EXAMPLE} or {PIPE_EXAMPLE}")
    return urls


def fetch_manifest(folder_url: str) -> tuple[str, object]:
    """(its URL, the parsed JSON) of a folder URL's ember-shards.json, fetched with a timeout. Raises an
    EmberDataError naming the fix when the server is unreachable, answers an error or serves no JSON."""
    url = file_url(folder_url, "ember-shards.json")
    try:
        with urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S) as answer:
            return url, json.loads(answer.read(MANIFEST_MAX_BYTES))
    except urllib.error.HTTPError as err:
        raise EmberDataError(f"{url} answered HTTP {err.code} ({err.reason}): point data.path at the folder URL "
                             "that serves the folder `ember data prepare` wrote, or at a shard pattern such as "
                             f"{HTTP_EXAMPLE} with data.val_path") from err
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        reason = getattr(err, "reason", err)
        raise EmberDataError(f"cannot reach {url} ({reason}): start the server, or fix the host and port of "
                             "data.path") from err
    except ValueError as err:  # not JSON, or not UTF-8
        raise EmberDataError(f"{url} is not a readable shard manifest ({err}): serve the folder `ember data "
                             "prepare` wrote") from err


def open_url(url: str) -> str:
    """The URL gopen opens for a shard: an http(s) URL becomes a pipe to curl with a connect timeout and a stall
    limit (and a short retry for transient server errors); a pipe: or a local path is unchanged."""
    if not url.startswith(HTTP):
        return url
    command = ["curl", "--fail", "--silent", "--location", "--retry", str(CURL_RETRIES), "--connect-timeout",
               str(CONNECT_TIMEOUT_S), "--speed-limit", "1", "--speed-time", str(STALL_TIMEOUT_S), url]
    return PIPE + shlex.join(command)


def shard_samples(urls: list[str], fix: str, bad_shards: str = "stop", members: tuple[str, ...] = (),
                  hint: str = "", skipped: Optional[dict[str, str]] = None) -> Iterator[dict]:
    """The samples of the shards at `urls` in order, each a dict of webdataset's ("__key__", "__url__": the
    shard's URL as given, one entry per member).

    Args:
        urls: shard paths or URLs (http(s), pipe:) as listed, already expanded.
        fix: how to repair a shard whose contents are bad (a network or command failure names its own fix).
        bad_shards: "stop" raises one EmberDataError naming the shard's URL and the fix; "skip" logs that
            message as a warning and goes on with the next shard. Reading none of them fails either way.
        members: the members every sample must hold (a sample without one makes its shard bad).
        hint: appended to the message that stops reading (e.g. how to skip bad shards instead).
        skipped: URL -> message of shards skipped so far; they are not tried again, and new ones are added.
    """
    skipped = {} if skipped is None else skipped
    tried, read = [u for u in urls if u not in skipped], 0
    for url in tried:
        try:
            for sample in _tar_samples(url):
                missing = [m for m in members if m not in sample]
                if missing:
                    raise ValueError(f"sample {sample['__key__']} has no {missing} member")
                read += 1
                yield sample
        except SHARD_ERRORS as err:
            message = bad_shard_message(url, err, fix)
            if bad_shards == "stop":
                raise EmberDataError(message + hint) from err
            log.warning("skipping a shard: %s", message)
            skipped[url] = message
    if tried and not read and all(u in skipped for u in tried):
        raise EmberDataError(f"none of the {len(tried)} shard(s) could be read; the first: {skipped[tried[0]]}")


def _tar_samples(url: str) -> Iterator[dict]:
    """The samples of one shard, read by webdataset from gopen(open_url(url)); a failing pipe command (curl's
    or the user's) raises CommandFailed with its exit status, whatever the tar reader saw of its output."""
    stream, finished = gopen(open_url(url), "rb"), False
    try:
        yield from group_by_keys(tar_file_expander([{"url": url, "stream": stream}]))
        finished = True
    except SHARD_ERRORS as err:
        status = _close(stream)
        if status not in QUIET_EXITS:
            raise CommandFailed(status) from err
        raise
    finally:
        if not finished:  # stopped early (an error, or a reader that has what it needs): no status to judge
            _close(stream)
    status = _close(stream)
    if status not in QUIET_EXITS:
        raise CommandFailed(status)


def _close(stream) -> Optional[int]:
    """Close a shard stream and return the exit status of its command for a pipe (None for a file): returned to
    be judged by the caller, not raised as webdataset's Pipe raises it."""
    set_options(stream, ignore_errors=True)
    stream.close()
    return getattr(stream, "status", None)


def bad_shard_message(url: str, err: BaseException, fix: str) -> str:
    """One line naming the shard by its URL, what went wrong, and the fix for that kind of failure."""
    if isinstance(err, CommandFailed) and url.startswith(HTTP):
        what = CURL_EXITS.get(err.status, f"curl exited with status {err.status}")
        what = what.format(connect=CONNECT_TIMEOUT_S, stall=STALL_TIMEOUT_S)
        action = ("check that the pattern's range matches the served shard names" if err.status == 22 else
                  "check that the server is up and the URL's host and port are right")
        return f"shard {url} cannot be read ({what}): {action}"
    if isinstance(err, CommandFailed):
        return (f"shard {url} cannot be read (its command exited with status {err.status}): run the command in a "
                "shell to see why it fails")
    what = str(err.args[0]).split(" @ ")[0] if err.args else type(err).__name__  # webdataset appends " @ stream"
    return f"shard {url} cannot be read ({what}): {fix}"
