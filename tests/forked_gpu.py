"""A stand-in for ZeroGPU's worker: run a generator function in a forked child, as `spaces.GPU` does.

Like ZeroGPU, the arguments are pickled on the way in and every yielded value on the way out (a value
that does not pickle fails the call), the child's changes to its own memory are lost, and closing the
consumer sets a stop event that the child checks after each yield, closing the generator there.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import traceback
from collections.abc import Callable, Iterator
from typing import Any

CTX = mp.get_context("fork")


def _child(fn: Callable[..., Iterator[Any]], payload: bytes, conn: Any, stop: Any) -> None:
    try:
        args, kw = pickle.loads(payload)
        gen = fn(*args, **kw)
        for item in gen:
            if stop.is_set():
                gen.close()
                break
            conn.send_bytes(pickle.dumps(("item", (os.getpid(), item))))
        conn.send_bytes(pickle.dumps(("end", os.getpid())))
    except BaseException:  # noqa: BLE001 - reported to the parent, as ZeroGPU reports worker errors
        conn.send_bytes(pickle.dumps(("error", traceback.format_exc())))
    finally:
        conn.close()


class ForkedGpu:
    """Wrap a generator function; each call runs it in a new forked child process."""

    def __init__(self, fn: Callable[..., Iterator[Any]], timeout_s: float = 120):
        self.fn = fn
        self.timeout_s = timeout_s
        self.child_pids: list[int] = []  # pids the yielded values came from
        self.calls = 0

    def __call__(self, *args: Any, **kw: Any) -> Iterator[Any]:
        payload = pickle.dumps((args, kw))  # before forking: an unpicklable argument fails here
        self.calls += 1
        return self._run(payload)

    def _run(self, payload: bytes) -> Iterator[Any]:
        recv, send = CTX.Pipe(duplex=False)
        stop = CTX.Event()
        proc = CTX.Process(target=_child, args=(self.fn, payload, send, stop), daemon=True)
        proc.start()
        send.close()
        try:
            while True:
                if not recv.poll(self.timeout_s):
                    raise TimeoutError("the forked GPU worker sent nothing")
                kind, data = pickle.loads(recv.recv_bytes())
                if kind == "end":
                    return
                if kind == "error":
                    raise RuntimeError(f"GPU worker error:\n{data}")
                pid, item = data
                self.child_pids.append(pid)
                try:
                    yield item
                except GeneratorExit:
                    stop.set()
                    raise
        finally:
            stop.set()
            proc.join(30)
            if proc.is_alive():
                proc.kill()
            recv.close()
