"""Runs shared by the tests of the commands that load a trained model (`ember session`, `ember stability`), and
the fuzz suite's runner (`fuzz`) with the summary of its cases."""

import resource
import shlex
import signal
import traceback
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest

from ember.cli.main import main
from helpers import FUZZ_EXAMPLES, FUZZ_SEED, FUZZ_TALLY, ROOT, changed, fit_args, run_cli, run_folder, snapshot, tally

MEMORY = str(ROOT / "configs/debug/nml_memory.yaml")
PLAIN = str(ROOT / "configs/debug/quickstart.yaml")


@pytest.fixture(scope="package")
def trained_runs(tmp_path_factory):
    out = {}
    for name, config in (("memory", MEMORY), ("plain", PLAIN)):
        run_dir = tmp_path_factory.mktemp(name)
        assert run_cli(*fit_args(run_dir, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
                                 config=config)) == 0
        out[name] = (config, str(run_folder(run_dir) / "checkpoints/last.ckpt"))
    return out


# ---- the fuzz suite (test_fuzz_*.py): one case of `ember` run in-process and its property checked ----------------
class FuzzHang(BaseException):
    """Raised in a fuzz case that runs past its time limit (a BaseException: the command must not catch it)."""


@contextmanager
def bounded(seconds: int, extra_memory: int = 6 << 30):
    """Raise FuzzHang after `seconds`; cap the process's address space at its present size plus `extra_memory`, so
    a huge size in a fuzzed config fails its allocation instead of swapping a shared machine to a halt."""
    def hang(signum, frame):
        raise FuzzHang

    size = int(next(line for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("VmSize")).split()[1]) * 1024
    limits = resource.getrlimit(resource.RLIMIT_AS)
    cap = size + extra_memory if limits[1] == resource.RLIM_INFINITY else min(size + extra_memory, limits[1])
    resource.setrlimit(resource.RLIMIT_AS, (cap, limits[1]))
    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        resource.setrlimit(resource.RLIMIT_AS, limits)


class Fuzz:
    """`fuzz(kind, what, argv, watch)` runs `ember argv` in-process and checks the property of every fuzz case:
    exit status 0 or 2 (2 with an "error:" line), no traceback, done within `limit_s`, and every file under
    `watch` that existed before unchanged, except those in `writes` when the command succeeded (asked to write),
    and those in `rewrites`, which it may replace and then fail (a command that writes one file after another; the
    caller checks that they are whole)."""

    def __init__(self, request, capsys, caplog):
        self.node, self.capsys, self.caplog = request.node.nodeid, capsys, caplog

    def __call__(self, kind: str, what: str, argv: list[str], watch: list[Path], writes=(), rewrites=(),
                 limit_s: int = 60) -> int:
        before, problem, code = snapshot(*watch), None, None
        try:
            with bounded(limit_s):
                code = main(argv)
        except SystemExit as stop:
            code = stop.code
        except FuzzHang:
            problem = f"still running after {limit_s} s"
        except BaseException:  # noqa: BLE001  (the case failed: show how)
            problem = "raised\n" + traceback.format_exc()
        out = self.capsys.readouterr()
        self.text = text = out.out + out.err + self.caplog.text  # what the case printed, for its caller
        self.caplog.clear()
        if problem is None and code not in (0, 2):
            problem = f"exit status {code}"
        elif problem is None and "Traceback (most recent call last)" in text:
            problem = "printed a traceback\n" + text[text.index("Traceback (most recent call last)"):][-3000:]
        elif problem is None and code == 2 and "error" not in text.lower():
            problem = "exit status 2 without an error message"
        asked = set(map(str, rewrites)) | (set(map(str, writes)) if code == 0 else set())
        lost = [p for p in changed(before) if p not in asked]
        tally(kind, problem is None, not lost)
        assert problem is None and not lost, (
            f"fuzz case failed: {kind}, {what}: {problem or f'changed {lost}'}\n  ember {shlex.join(argv)}\n  replay: "
            f"EMBER_FUZZ_SEED={FUZZ_SEED} EMBER_FUZZ_EXAMPLES={FUZZ_EXAMPLES} pytest '{self.node}'")
        return code


@pytest.fixture
def fuzz(request, capsys, caplog, tmp_path, monkeypatch) -> Fuzz:
    monkeypatch.chdir(tmp_path)  # relative outputs (runs/, runs/cache) land in the case's folder
    return Fuzz(request, capsys, caplog)


def pytest_terminal_summary(terminalreporter):
    """The fuzz cases of this session by kind: the numbers of RELIABILITY.md."""
    if not FUZZ_TALLY:
        return
    write = terminalreporter.write_line
    write(f"fuzz cases (EMBER_FUZZ_SEED={FUZZ_SEED}, EMBER_FUZZ_EXAMPLES={FUZZ_EXAMPLES}):")
    write("| kind | cases | handled (exit 0 or 2, no traceback or hang) | nothing lost |")
    write("|---|---|---|---|")
    for kind, count in sorted(FUZZ_TALLY.items()):
        write(f"| {kind} | {count['cases']} | {count['handled']} | {count['kept']} |")
    total = sum(FUZZ_TALLY.values(), Counter())
    write(f"| all | {total['cases']} | {total['handled']} | {total['kept']} |")
    for kind, count in sorted(FUZZ_TALLY.items()):
        outcomes = {k: n for k, n in count.items() if k not in ("cases", "handled", "kept")}
        if outcomes:
            write(f"{kind}: " + ", ".join(f"{k} {n}" for k, n in sorted(outcomes.items())))
