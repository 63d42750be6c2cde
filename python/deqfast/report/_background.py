"""A worker process for the long single-threaded jobs of a ``reproduce`` run.

:func:`deqfast.design.design_explicit` is single-threaded Python (its kernel fits run on one
OpenMP thread, :ref:`§5 <theory-5>`) and depends only on the DEQ (activation, σ_a², τ0), the
target kernel and the family, not on the sections' data; the ten-class section's
kernel limits (:func:`deqfast.random_features.kernel_limits`) depend only on its data. So
the run asks for all of them at the start and a worker process computes them, one after the
other, on the core that the mixture and finite-width sections leave idle; a section that
needs a result takes it when finished (or waits for it). The worker calls the same function
with the same arguments and the same thread limits as the run itself would (one BLAS
thread), so every number of the report is the one the run would compute alone: ``jobs=0``
computes in the run's own process instead, and the tests compare the two.

The worker is a fresh interpreter (``python -c``, not ``multiprocessing``: it neither
re-imports the caller's main script nor inherits an OpenMP runtime across ``fork``) that
reads pickled jobs (a module-level function and its arguments) on its standard input and
writes pickled results on its standard output. It ignores SIGINT (Ctrl-C interrupts the run,
which then ends the worker) and exits when its input closes or the run's process is gone. If
it cannot start or dies, the jobs are computed in the run's process.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Hashable
from typing import IO, Any

__all__ = ["BackgroundJobs", "DesignKey", "design"]

#: ``(activation, σ_a², τ0, target kernel, family)``: everything a design depends on.
DesignKey = tuple[str, float, float, str, str]

#: A job: a module-level function (pickled by name) and its arguments.
Job = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]

#: A job's result, the warnings it emitted (message, category, file, line) and its CPU
#: seconds.
_Outcome = tuple[Any, list[tuple[Warning, type[Warning], str, int]], float]


def design(key: DesignKey) -> Any:
    """``design_explicit`` of the DEQ of ``key``."""
    from deqfast.deq import DEQ
    from deqfast.design import design_explicit

    act, sigma_a2, tau0, target, family = key
    return design_explicit(DEQ(act, sigma_a2=sigma_a2, tau0=tau0), kernel=target, family=family)


def _run(job: Job) -> _Outcome:
    """``fn(*args, **kwargs)`` of ``job`` on one BLAS thread; with the warnings it emitted
    and its CPU seconds."""
    from deqfast._shared import blas_threads

    fn, args, kwargs = job
    c0 = time.process_time()
    with warnings.catch_warnings(record=True) as caught, blas_threads(1):
        warnings.simplefilter("always")
        value = fn(*args, **kwargs)
    emitted = [(w.message, w.category, w.filename, w.lineno) for w in caught]
    return value, emitted, time.process_time() - c0  # type: ignore[return-value]


def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    """The worker's loop: a pickled :data:`Job` in, ``("ok", outcome)`` or
    ``("error", exception)`` out, until ``inp`` ends."""
    while True:
        try:
            job = pickle.load(inp)
        except EOFError:
            return
        try:
            reply: tuple[str, Any] = ("ok", _run(job))
        except Exception as exc:  # handed to the run, which raises it
            reply = ("error", exc)
        pickle.dump(reply, out)
        out.flush()


def _watch_parent(parent: int) -> None:  # pragma: no cover - the worker process
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _main() -> None:  # pragma: no cover - the worker process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed must not mix with the replies
    serve(sys.stdin.buffer, out)


class BackgroundJobs:
    """Jobs computed by a worker process (``jobs >= 1``) or here (``0``), on demand.

    :meth:`submit` queues a job under a key; :meth:`result` returns its result (computing
    it here if it was not computed by the worker), re-emits the warnings it raised and, for
    a worker's job, adds its CPU seconds to :attr:`cpu_seconds` (so a section's CPU time
    counts the worker's share). :meth:`close` ends the worker.
    """

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = int(jobs)
        self.cpu_seconds = 0.0
        self._queue: list[Hashable] = []  # sent to the worker, reply not read yet
        self._done: dict[Hashable, _Outcome] = {}
        self._results: dict[Hashable, Any] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> bool:
        import deqfast

        root = os.path.dirname(os.path.dirname(os.path.abspath(deqfast.__file__)))
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
        code = "from deqfast.report._background import _main; _main()"
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                env=env,
            )  # fmt: skip
        except OSError:
            self.jobs = 0
            return False
        return True

    def submit(self, key: Hashable, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Send ``fn(*args, **kwargs)`` to the worker, to be returned by ``result(key)``
        (nothing with ``jobs=0``: :meth:`result` computes it)."""
        if self.jobs <= 0 or key in self._queue or key in self._done or key in self._results:
            return
        if self._proc is None and not self._start():
            return
        assert self._proc is not None and self._proc.stdin is not None
        try:
            pickle.dump((fn, args, kwargs), self._proc.stdin)
            self._proc.stdin.flush()
        except OSError:  # the worker is gone: compute here
            self._lost()
            return
        self._queue.append(key)

    def _lost(self) -> None:
        self.close()
        self._queue.clear()
        self.jobs = 0

    def submitted(self, key: Hashable) -> bool:
        """Whether ``key`` went to the worker (its result may still be on the way)."""
        return key in self._queue or key in self._done

    def _read(self, key: Hashable) -> None:
        """Read the worker's replies up to the one for ``key``."""
        assert self._proc is not None and self._proc.stdout is not None
        while key in self._queue:
            try:
                status, value = pickle.load(self._proc.stdout)
            except (EOFError, OSError, pickle.UnpicklingError):
                self._lost()
                return
            done = self._queue.pop(0)
            if status != "ok":
                raise value
            self._done[done] = value
            self.cpu_seconds += value[2]

    def result(self, key: Hashable, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The result of the job ``key``: the worker's, or ``fn(*args, **kwargs)`` computed
        here when it did not go to the worker (or the worker was lost)."""
        if key in self._results:
            return self._results[key]
        if key in self._queue:
            self._read(key)
        if key in self._done:
            value, caught, _ = self._done.pop(key)
        else:
            value, caught, _ = _run((fn, args, kwargs))
        for message, category, filename, lineno in caught:
            warnings.warn_explicit(message, category, filename, lineno)
        self._results[key] = value
        return value

    def close(self) -> None:
        """End the worker (at once: a design not yet read is dropped)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.kill()  # not just end of input: a forked process may hold the pipe open too
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        proc.wait()
