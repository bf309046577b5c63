"""Many independent optimisers, one batched model evaluation.

Per-image optimisers written for one problem at a time (scipy's L-BFGS-B) each run in a worker
thread; every objective evaluation they ask for waits at a barrier until each live worker has
asked for one (or finished), and then all of them are answered by one batched call. The
rounds are the same whatever the thread scheduling, so the results are too.
"""
from __future__ import annotations

import threading
from typing import Callable, Sequence


class BatchedClosure:
    """``run(workers)``: ``workers[i](ask)`` runs in a thread of its own, and ``ask(v)`` (v
    anything) returns ``evaluate(rows, [v for each row])[k]`` for its row, evaluated together
    with every other worker's pending request. Returns the workers' return values in order;
    a worker's exception is raised in the caller once every worker has stopped."""

    def __init__(self, evaluate: Callable[[list[int], list], Sequence]):
        self.evaluate = evaluate
        self.cv = threading.Condition()
        self.pending: dict[int, object] = {}
        self.answers: dict[int, object] = {}
        self.live = 0

    def _ask(self, row: int, v):
        with self.cv:
            self.pending[row] = v
            self.cv.notify_all()
            while row not in self.answers:
                self.cv.wait()
            answer = self.answers.pop(row)
        if isinstance(answer, BaseException):  # the batched evaluation failed
            raise answer
        return answer

    def run(self, workers: Sequence[Callable]) -> list:
        results: list = [None] * len(workers)
        errors: list = []
        self.live = len(workers)

        def body(row, fn):
            try:
                results[row] = fn(lambda v: self._ask(row, v))
            except BaseException as e:  # handed to the caller
                errors.append(e)
            finally:
                with self.cv:
                    self.live -= 1
                    self.cv.notify_all()

        threads = [threading.Thread(target=body, args=(i, fn), daemon=True) for i, fn in enumerate(workers)]
        for t in threads:
            t.start()
        while True:
            with self.cv:
                while len(self.pending) < self.live:
                    self.cv.wait()
                if self.live == 0:
                    break
                batch, self.pending = self.pending, {}
            rows = sorted(batch)
            try:
                out = self.evaluate(rows, [batch[r] for r in rows])
            except BaseException as e:  # stop every worker: answer each with the error
                errors.append(e)
                out = [e] * len(rows)
            with self.cv:
                for r, a in zip(rows, out):
                    self.answers[r] = a
                self.cv.notify_all()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results
