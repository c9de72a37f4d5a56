"""Errors that Ember reports to the user as one clear line (the CLI prints them without a traceback)."""


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (an MlflowException's `message`, else str(err); the type's name
    when empty), at most `limit` characters: what a one-line error quotes of its cause."""
    return (str(getattr(err, "message", None) or err).strip().splitlines() or [type(err).__name__])[0][:limit]


class EmberError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class EmberConfigError(EmberError, ValueError):
    """A configuration value that cannot work (shapes, names, paths)."""


class EmberDataError(EmberError, ValueError):
    """A data path that is missing, empty or in the wrong format."""


class NonFiniteLossError(EmberError, FloatingPointError):
    """Training produced NaN/inf; training stops and the last good checkpoint is kept."""

    @classmethod
    def at(cls, what: str, value: float, step: int, checkpoint: str, lr=None,
           warmup: str = "the warm-up") -> "NonFiniteLossError":
        """The error for `what` (a loss or metric) turned `value` at `step`, naming the last good `checkpoint`
        ("" when none was saved yet), the learning rate `lr` if known and the warm-up setting to raise."""
        lower = f"Lower model.lr (now {lr})" if lr is not None else "Lower the learning rate"
        return cls(f"{what} became {value} at step {step}: training stopped, nothing saved from it. Last good "
                   f"checkpoint: {checkpoint or 'none saved yet'}. {lower}, raise {warmup}, or train in "
                   "trainer.precision=32; resume with --ckpt_path <that checkpoint>.")


class TrainingStopped(EmberError):
    """A stop signal (SIGINT, SIGTERM) ended a command; the message says what was saved and how to resume, and the
    exit status is the shell's for that signal (128 + its number: 130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class CheckpointMismatchError(EmberError, RuntimeError):
    """A checkpoint saved from another composite than the one configured."""
