"""The one error type meant for the user.

`UserError` says what was wrong with the input (or the state the user can change) in plain words,
naming the argument and the limit; the UI shows its message as it is. Every other exception is a
bug: the UI logs it with its traceback and shows "something went wrong" with an id to find it.
It subclasses ValueError, so code that checks input the Python way keeps working.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input, or a state the user can fix; the message is for the user."""
