"""Errors that Ember reports to the user as one clear line (the CLI prints them without a traceback)."""


class EmberError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class EmberConfigError(EmberError, ValueError):
    """A configuration value that cannot work (shapes, names, paths)."""


class EmberDataError(EmberError, ValueError):
    """A data path that is missing, empty or in the wrong format."""


class NonFiniteLossError(EmberError, FloatingPointError):
    """Training produced NaN/inf; training stops and the last good checkpoint is kept."""


class CheckpointMismatchError(EmberError, RuntimeError):
    """A checkpoint saved from another composite than the one configured."""
