"""Host handle of one sandbox: starts the zygote (never by forking the host), sends it jobs.

A worker draws the program uid of its sandbox at each start: a host uid when the host is root,
the programs' uid inside their own namespaces at the bwrap level otherwise (see `isolation`).

The zygote is started with `subprocess.Popen` (fork+exec of a fresh `python -I`, which imports
neither JAX nor this package), either inside bubblewrap or, at the rlimits level, as a plain child
in its own session. If it dies, hangs past a job's deadline or breaks the protocol, the whole
sandbox (process group / pid namespace) is killed, that job's tests count as errors, and the next
job starts a fresh sandbox.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any, Sequence

from restrl_jax.execution import isolation as iso
from restrl_jax.execution import payload, wire

START_TIMEOUT_S = 60.0
REPLY_SLACK_S = 30.0
_UID_RANGE = (1_000_000, 2_000_000_000)


def _fresh_uids() -> dict[str, int]:
  return {"program": _UID_RANGE[0] + secrets.randbelow(_UID_RANGE[1] - _UID_RANGE[0])}


_REAPER = ("import os, signal, time\nfor _ in range(3):\n  try: os.kill(-1, signal.SIGKILL)\n"
           "  except ProcessLookupError: break\n  time.sleep(0.01)\n")


def _reap_host_uid(uid: int) -> None:
  """Kill every process of a sandbox uid on the host (rlimits level: no pid namespace to drop).

  Runs as that uid in a fresh interpreter (no fork of this process), so it can reach nothing else.
  """
  try:
    subprocess.run([sys.executable, "-I", "-S", "-c", _REAPER], user=uid, group=uid,
                   extra_groups=[], env={}, cwd="/", timeout=10, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  except (OSError, subprocess.SubprocessError):
    pass


class Worker:
  """One sandbox (zygote) and the pipes to it. Not thread-safe: one job at a time."""

  def __init__(self, level: str, hide: Sequence[str] = iso.HIDDEN_PACKAGES):
    if level not in ("bwrap", "rlimits"):
      raise ValueError(f"isolation level must be 'bwrap' or 'rlimits', got {level!r}")
    self.level, self.hide = level, tuple(hide)
    self.proc: subprocess.Popen | None = None
    self.tmp_root = iso.SANDBOX_TMP
    self.private_tmp: str | None = None
    self.uids: dict[str, int | None] = {"program": None}
    self.program_namespaces = False  # programs in namespaces of their own (see `namespaces`)
    self.import_roots: list[list[str]] = []

  def _command(self) -> list[str]:
    python = [sys.executable, "-I", "-c", payload.bootstrap_source()]
    return iso.bwrap_command(python, self.hide) if self.level == "bwrap" else python

  def start(self) -> None:
    root = os.geteuid() == 0
    self.uids = _fresh_uids() if root or self.level == "bwrap" else {"program": None}
    self.program_namespaces = self.level == "bwrap" and not root
    separate_uid = self.level == "rlimits" and self.uids["program"] is not None
    self.import_roots = iso.import_roots() if separate_uid else []
    cwd = None
    if self.level == "rlimits":
      self.private_tmp = tempfile.mkdtemp(prefix="restrl_sandbox_")
      os.chmod(self.private_tmp, 0o711)
      self.tmp_root = cwd = self.private_tmp
    self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
        self._command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, env=iso.sandbox_env(), cwd=cwd, close_fds=True,
        start_new_session=True)
    hello = wire.recv(self.proc.stdout.fileno(), START_TIMEOUT_S)
    if not hello.get("hello"):
      raise RuntimeError(f"sandbox did not start: {hello}")

  def run(self, job: dict[str, Any]) -> dict[str, Any]:
    """The zygote's reply to `job`; `{"error": ...}` when the sandbox failed (it is restarted)."""
    budget = float(job["program_timeout_s"]) + REPLY_SLACK_S
    try:
      if self.proc is not None and self.proc.poll() is not None:
        self.kill()  # the zygote died: clean up after it before a fresh start
      if self.proc is None:
        self.start()  # before the job names its uids: a (re)start draws new ones
      job = dict(job, uids=self.uids, program_namespaces=self.program_namespaces,
                 tmp_root=self.tmp_root, import_roots=self.import_roots)
      wire.send(self.proc.stdin.fileno(), job)
      reply = wire.recv(self.proc.stdout.fileno(), budget)
      if reply.get("id") != job["id"]:
        raise wire.WireError(f"reply for job {reply.get('id')!r}, expected {job['id']!r}")
      return reply
    except (wire.WireError, OSError, RuntimeError) as err:
      self.kill()
      return {"error": f"sandbox failure: {err}"}

  def kill(self) -> None:
    if self.proc is not None:
      try:
        os.killpg(self.proc.pid, signal.SIGKILL)
      except (ProcessLookupError, PermissionError):
        pass
      self.proc.wait()
      for stream in (self.proc.stdin, self.proc.stdout):
        stream.close()
      self.proc = None
    if self.level == "rlimits" and self.uids["program"] is not None:
      _reap_host_uid(self.uids["program"])
    if self.private_tmp is not None:
      shutil.rmtree(self.private_tmp, ignore_errors=True)
      self.private_tmp = None

  def close(self) -> None:
    if self.proc is not None and self.proc.poll() is None:
      try:
        wire.send(self.proc.stdin.fileno(), {"exit": True})
        self.proc.wait(timeout=5)
      except (OSError, subprocess.TimeoutExpired):
        pass
    self.kill()
