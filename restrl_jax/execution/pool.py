"""ExecutionPool: run many programs against their tests in parallel sandboxes.

    with ExecutionPool(num_workers=8) as pool:
      results = pool.run(programs, suites)           # blocking, order preserved
      future = pool.submit(programs, suites)         # overlap with device work
      ...; results = future.result()

Each worker is a long-lived sandbox (see `worker`, `zygote`); jobs go to whichever is idle.
"""
from __future__ import annotations

import concurrent.futures as cf
import itertools
import logging
import os
import queue
import threading
import warnings
from typing import Sequence

from restrl_jax.execution import isolation as iso
from restrl_jax.execution import jobs
from restrl_jax.execution.spec import ExecResult, TestSuite
from restrl_jax.execution.worker import Worker

_LOG = logging.getLogger(__name__)


def resolve_isolation(requested: str) -> str:
  """The level in force for a requested one: "rlimits" only when asked for; "auto" and "bwrap"
  give "bwrap" or raise `SandboxUnavailable` (one line: what failed, the fix, the opt-in)."""
  if requested not in iso.LEVELS:
    raise ValueError(f"isolation must be one of {iso.LEVELS}, got {requested!r}")
  if requested == "rlimits":
    return "rlimits"
  usable, reason = iso.bwrap_usable()
  if not usable:
    raise iso.SandboxUnavailable(iso.unavailable_message(reason))
  return "bwrap"


def _warn_weaker_level() -> None:
  message = ("execution sandbox: WEAKER isolation level 'rlimits' in force (requested): resource "
             "limits, sessions and a private temp dir only; no filesystem, network or pid "
             "isolation")
  _LOG.warning(message)
  warnings.warn(message, RuntimeWarning, stacklevel=4)


def _gather(futures: list[cf.Future]) -> cf.Future:
  """A future of the list of results of `futures`, in order."""
  out: cf.Future = cf.Future()
  left = [len(futures)]
  lock = threading.Lock()

  def done(_):
    with lock:
      left[0] -= 1
      finished = left[0] == 0
    if finished and not out.done():
      errors = [f.exception() for f in futures if f.exception() is not None]
      if errors:
        out.set_exception(errors[0])
      else:
        out.set_result([f.result() for f in futures])

  out.parts = futures  # type: ignore[attr-defined]  # for progress reporting
  if not futures:
    out.set_result([])
  for future in futures:
    future.add_done_callback(done)
  return out


class ExecutionPool:
  """A pool of sandboxed workers; use as a context manager or call `close()`."""

  def __init__(self, num_workers: int | None = None, isolation: str = "auto",
               limits: jobs.Limits | None = None,
               hide_packages: Sequence[str] = iso.HIDDEN_PACKAGES, progress: bool = False):
    num_workers = (os.cpu_count() or 1) if num_workers is None else num_workers
    if not isinstance(num_workers, int) or num_workers < 1:
      raise ValueError(f"num_workers must be a positive int, got {num_workers!r}")
    self.isolation = resolve_isolation(isolation)
    if self.isolation == "rlimits":
      _warn_weaker_level()
    self.limits = limits or jobs.Limits()
    self.progress = progress
    self._ids = itertools.count()
    self._idle: queue.Queue[Worker] = queue.Queue()
    self._workers = [Worker(self.isolation, hide_packages) for _ in range(num_workers)]
    self._executor = cf.ThreadPoolExecutor(num_workers, thread_name_prefix="sandbox")
    self._closed = False
    starts = [self._executor.submit(w.start) for w in self._workers]
    for worker, start in zip(self._workers, starts):
      start.result()
      self._idle.put(worker)

  @property
  def num_workers(self) -> int:
    return len(self._workers)

  def _execute(self, job: dict, suite: TestSuite) -> ExecResult:
    worker = self._idle.get()
    try:
      reply = worker.run(job)
    finally:
      self._idle.put(worker)
    return jobs.verdict(suite, reply, len(job["tests"]), self.isolation)

  def submit(self, programs: Sequence[str], suites: Sequence[TestSuite]) -> cf.Future:
    """Start running `programs[i]` against `suites[i]`; a future of the list of ExecResults."""
    if self._closed:
      raise RuntimeError("ExecutionPool is closed")
    if isinstance(programs, str) or len(programs) != len(suites):
      raise ValueError(f"need one suite per program: {len(programs)} programs, "
                       f"{len(suites)} suites (pass a list of programs, not a single string)")
    return _gather(self._submit_each(programs, suites))

  def _submit_each(self, programs: Sequence[str], suites: Sequence[TestSuite]) -> list[cf.Future]:
    prepared = [jobs.make_job(next(self._ids), p, s, self.limits) for p, s in zip(programs, suites)]
    return [self._executor.submit(self._execute, job, s) for job, s in zip(prepared, suites)]

  def run(self, programs: Sequence[str], suites: Sequence[TestSuite]) -> list[ExecResult]:
    """Run and wait; results in the order of `programs` (a tqdm bar if `progress`)."""
    if not (self.progress and len(programs) > 1):
      return self.submit(programs, suites).result()
    future = self.submit(programs, suites)
    futures = getattr(future, "parts", [])
    _progress_bar(futures)
    return future.result()

  def close(self) -> None:
    if self._closed:
      return
    self._closed = True
    self._executor.shutdown(wait=True)
    for worker in self._workers:
      worker.close()

  def __enter__(self) -> "ExecutionPool":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass


def _progress_bar(futures: list[cf.Future]) -> None:
  try:
    import tqdm  # pylint: disable=import-outside-toplevel
  except ImportError:
    return
  with tqdm.tqdm(total=len(futures), desc="executing", unit="prog") as bar:
    for _ in cf.as_completed(futures):
      bar.update(1)


def run_programs(programs: Sequence[str], suites: Sequence[TestSuite],
                 **pool_kwargs) -> list[ExecResult]:
  """Run with a one-shot pool (sized to the work unless `num_workers` is given)."""
  pool_kwargs.setdefault("num_workers", max(1, min(len(programs), os.cpu_count() or 1)))
  with ExecutionPool(**pool_kwargs) as pool:
    return pool.run(programs, suites)
