"""The `ember` console script: one dispatch table from the command's first word to the module that runs it.

    ember fit|validate|test|predict ...   ember.cli.lightning (LightningCLI)
    ember plugins|configs|data|session|stability|ablate ...   ember.cli.<command>
    ember bench ...                       ember.bench.command
    ember --version

Each command module has `main(argv) -> int`. A command's module is imported when it runs, not before:
importing Lightning takes seconds, and `ember --version` needs none of it.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import signal
import sys
import warnings

import ember
from ember.errors import EmberConfigError, EmberError, TrainingStopped, first_line

log = logging.getLogger("ember")
LIGHTNING = "ember.cli.lightning"
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
COMMANDS = {
    "plugins": "ember.cli.plugins",
    "configs": "ember.cli.configs",
    "data": "ember.cli.data",
    "session": "ember.cli.session",
    "sleep": "ember.cli.sleep",
    "stability": "ember.cli.stability",
    "ablate": "ember.cli.ablate",
    "bench": "ember.bench.command",
}


class _DropTips(logging.Filter):
    """Drops Lightning's advertisement for its cloud logger (`rank_zero_info("💡 Tip: ... litlogger ...")`, printed
    on every Trainer construction since Lightning 2.6 when no LitLogger is used)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_known_noise():
    """Silence, at their source, the messages every command printed that tell the user nothing:
    - Lightning's `utilities/_pytree.py` builds torch's deprecated `LeafSpec` (a FutureWarning on every fit;
      Lightning-AI/pytorch-lightning#21326; drop this filter once the installed Lightning no longer does);
    - Lightning's litlogger tip (above);
    - MLflow's INFO lines when it creates or migrates the local sqlite store."""
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in rank_zero.filters):  # main() runs many times in one test process
        rank_zero.addFilter(_DropTips())
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)


def setup_logging():
    """Ember's messages on stderr, without logger names (the user reads them, not a log parser)."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def dispatch(argv: list[str], from_command_line: bool) -> int:
    """Run the command `argv` names; everything that is not one of COMMANDS goes to LightningCLI."""
    if argv[:1] in (["--version"], ["-V"]):
        sys.stdout.write(f"ember {ember.__version__}\n")
        return 0
    if argv[:1] and argv[0] in COMMANDS:
        return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
    if argv[:1] and not argv[0].startswith("-") and argv[0] not in LIGHTNING_COMMANDS:
        every = [*LIGHTNING_COMMANDS, *COMMANDS]
        close = difflib.get_close_matches(argv[0], every, n=2, cutoff=0.5)
        raise EmberConfigError(f"no command {argv[0]!r}" + (f": did you mean {' or '.join(close)}?" if close else "")
                               + f" The commands: {', '.join(every)}; ember COMMAND --help for one")
    return importlib.import_module(LIGHTNING).main(argv, from_command_line)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (2 for a configuration or data error, 128 + the signal's number
    when SIGINT or SIGTERM stopped it)."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    quiet_known_noise()
    try:
        return dispatch(argv, from_command_line)
    except TrainingStopped as stop:
        log.warning("%s", stop)
        return stop.exit_code
    except KeyboardInterrupt:  # Ctrl+C outside training (in training, EmberCheckpoint stops between batches)
        log.warning("interrupted (SIGINT)")
        return 128 + signal.SIGINT
    except EmberError as err:
        log.error("error: %s", err)
        return 2
    except Exception as err:
        cause = ember_cause(err)
        if cause is None:
            raise
        log.error("error: %s", cause)
        return 2


def ember_cause(err: BaseException) -> EmberError | None:
    """The EmberError behind an exception that jsonargparse or Lightning wrapped, if any. What the machine refused
    is one too (machine_error): memory, a size past 64 bits, a file operation."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, EmberError):
            return err
        refused = machine_error(err)
        if refused is not None:
            return refused
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


# how torch and numpy say a size does not fit in 64 bits
OVERFLOW = ("Overflow when unpacking", "size calculation overflowed", "Maximum allowed dimension exceeded",
            "<= sys.maxsize", "without overflow")


def machine_error(err: BaseException) -> EmberConfigError | None:
    """The one-line message for what the machine refused, not a bug of Ember's: an allocation (MemoryError, torch's
    "can't allocate memory" or OutOfMemoryError), a number past a 64-bit size (OverflowError, torch's overflow), a
    file operation (OSError: a full disk, a read-only or missing path, no permission). None for any other error.
    The traceback goes to the debug log."""
    text = first_line(err, 300)
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError" or "can't allocate memory" in text:
        message = (f"out of memory ({text}): the config asks for more memory than this machine has; lower its sizes "
                   "(batch_size, seq_len, d_model, layers, memory items)")
    elif isinstance(err, OverflowError) or any(sign in text for sign in OVERFLOW):
        message = f"a size or count in the config is too large ({text}): lower it"
    elif isinstance(err, OSError):
        message = (f"{text}: the system refused a file operation; check the path, its permissions and the free disk "
                   "space (files Ember was replacing keep their earlier version)")
    else:
        return None
    log.debug("what the machine refused", exc_info=err)
    return EmberConfigError(message)


def run():
    """Console script: exit with main()'s status."""
    sys.exit(main())


if __name__ == "__main__":
    run()
