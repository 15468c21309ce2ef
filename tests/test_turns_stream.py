"""`kontext.model.turns.stream`: progress from a worker thread to a generator consumer."""

from __future__ import annotations

import threading

import pytest

from kontext.model.turns import Done, Progress, stream


def test_every_step_arrives_in_order_when_the_consumer_keeps_up():
    taken = threading.Semaphore(0)  # the producer waits until the consumer has taken each step

    def run(report, cancel):
        for step in range(1, 5):
            report(Progress(step, 4))
            assert taken.acquire(timeout=60)
        return "result"

    seen = []
    for item in stream(run, poll_s=0.01):
        seen.append(item)
        if isinstance(item, Progress):
            taken.release()
    assert [p.step for p in seen[:-1]] == [1, 2, 3, 4] and seen[-1] == Done("result")


def late_reader(monkeypatch) -> threading.Event:
    """The consumer reads only once the run has queued everything (set the event returned)."""
    import queue
    from types import SimpleNamespace

    from kontext.model import turns

    finished = threading.Event()

    class LateQueue(queue.Queue):
        def get(self, *args, **kwargs):
            assert finished.wait(60)
            return super().get(*args, **kwargs)

    monkeypatch.setattr(turns, "queue", SimpleNamespace(Queue=LateQueue, Empty=queue.Empty))
    return finished


def test_a_result_that_arrives_with_progress_still_reports_the_progress_first(monkeypatch):
    """A fast run (or a slow consumer): the newest step is yielded, then the result; never the result alone."""
    finished = late_reader(monkeypatch)

    def run(report, cancel):
        for step in range(1, 5):
            report(Progress(step, 4))
        finished.set()
        return "result"

    assert list(stream(run, poll_s=0.01)) == [Progress(4, 4), Done("result")]


def test_closing_the_consumer_cancels_the_run():
    started, stopped = threading.Event(), threading.Event()

    def run(report, cancel):
        report(Progress(1, 10))
        started.set()
        assert cancel.wait(60)
        stopped.set()

    gen = stream(run, poll_s=0.01)
    assert next(gen) == Progress(1, 10)
    assert started.wait(60)
    gen.close()
    assert stopped.wait(60)


def test_errors_of_the_run_reach_the_consumer():
    def run(report, cancel):
        raise ValueError("no good")

    with pytest.raises(ValueError, match="no good"):
        list(stream(run, poll_s=0.01))


def test_steps_that_arrive_together_keep_the_newest_preview_and_candidate_previews(monkeypatch):
    """Previews come every few steps: a batch of steps ending on one without them still carries the
    newest picture and the variations grid's newest cells."""
    finished = late_reader(monkeypatch)

    def run(report, cancel):
        report(Progress(1, 4))
        report(Progress(2, 4, "p2", 0, ("a2", "b2")))
        report(Progress(3, 4))
        finished.set()
        return "result"

    assert list(stream(run, poll_s=0.01)) == [Progress(3, 4, "p2", 0, ("a2", "b2")), Done("result")]
