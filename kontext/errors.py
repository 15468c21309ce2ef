"""The error types: the one meant for the user, and the ones that say why a turn ended without a step.

`UserError` says what was wrong with the input (or the state the user can change) in plain words,
naming the argument and the limit; the UI shows its message as it is. Every other exception is a
bug: the UI logs it with its traceback and shows "something went wrong" with an id to find it.
It subclasses ValueError, so code that checks input the Python way keeps working.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input, or a state the user can fix; the message is for the user."""


class Cancelled(Exception):
    """The edit was stopped by its cancel flag; no image was produced."""


class ModelLoadError(RuntimeError):
    """The chosen model could not be loaded; the message says what failed and what to do."""


class Refused(UserError):
    """A turn the content filter refused; the history is unchanged."""


class UnknownShare(UserError):
    """The link was revoked, its session was deleted, or it never existed."""


class Busy(UserError):
    """The turn was refused at admission; the message says why and what to do."""


class WorkerLost(UserError):
    """The worker running a turn went away (its process died, or the pool was stopped)."""
