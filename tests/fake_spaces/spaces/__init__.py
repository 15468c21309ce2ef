"""A fake `spaces` package for tests: `GPU` runs the function in a forked child (tests/forked_gpu.py).

It records whether torch was already imported when it was imported (ZeroGPU needs `spaces` first)
and each duration it was asked for, in the files named by $FAKE_SPACES_LOG, one JSON line each.
"""

import inspect
import json
import os
import sys

from forked_gpu import ForkedGpu

IMPORTED_BEFORE_TORCH = "torch" not in sys.modules


def _log(**record):
    path = os.environ.get("FAKE_SPACES_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


_log(event="import", before_torch=IMPORTED_BEFORE_TORCH)


def GPU(task=None, *, duration=None, size=None):  # noqa: N802 - the real API's name
    def wrap(fn):
        if inspect.isgeneratorfunction(fn):
            forked = ForkedGpu(fn)

            def handler(*args, **kw):
                seconds = duration(*args, **kw) if callable(duration) else duration
                _log(event="call", function=fn.__name__, duration=seconds)
                yield from forked(*args, **kw)
        else:  # a plain function: its one return value comes back, as with the real decorator
            forked = ForkedGpu(lambda *a, **k: iter([fn(*a, **k)]), timeout_s=900)

            def handler(*args, **kw):
                seconds = duration(*args, **kw) if callable(duration) else duration
                _log(event="call", function=fn.__name__, duration=seconds)
                return next(iter(list(forked(*args, **kw))))

        handler.zerogpu = None
        return handler

    return wrap(task) if callable(task) else wrap
