"""The zygote: a long-lived process inside one sandbox that runs jobs sent by the host.

It imports the usual libraries once (numpy, unittest, ...) and then, per job, forks fresh
children for the candidate program (as `uids.program`: a host uid, or with `program_namespaces`
the program's uid in namespaces of its own, see `sandbox_proc`); for judged tests it plays the
judge itself (trusted test code, plain data from the program). It never runs candidate code.
Per-test and per-program deadlines are enforced here; at the end of a job every process of the
program is killed and the job's directory emptied. Results go back to the host on a channel no
child holds.

Job: {"id", "mode": "stdio"|"call"|"judged"|"inproc", "kind", "program", "tests": [...], "header",
      "fn_name", "entry_point", "setup_code", "source", "timeout_s", "program_timeout_s",
      "limits", "uids": {"program"}, "program_namespaces", "tmp_root", "max_output_bytes",
      "import_roots": [[prefix, real dir], ...] (see `reroot`; rlimits level as root only)}
Reply: {"id", "results": [{"status": ..., "stdout"|"value": ...}, ...], "detail"}
"""
import gc
import os
import resource
import secrets
import shutil
import time

from restrl_jax.execution import inproc, judge, program_server, reroot, sandbox_proc, wire

PRELOAD = ("numpy", "unittest", "unittest.mock", "collections", "itertools", "functools",
           "heapq", "bisect", "math", "fractions", "decimal", "random", "re", "string", "typing",
           "json", "copy", "statistics", "datetime", "operator")



def _failure_status(err: Exception) -> str:
  """Status of a test whose exchange with the program broke: "timeout" or "error"."""
  return "timeout" if "timed out" in str(err) else "error"

def _searchable(path: str) -> None:
  """Mode 0700 on `path` and every directory under it: a program may have locked them, and the
  zygote may share its uid (sandbox of an ordinary user), with no capability to override."""
  os.chmod(path, 0o700)
  for folder, dirs, _ in os.walk(path):
    for name in dirs:
      if not os.path.islink(os.path.join(folder, name)):
        os.chmod(os.path.join(folder, name), 0o700)


def _fresh_dir(path: str, uid) -> str:
  """An empty directory owned by `uid` (None: by this process), mode 0700 (reused between jobs:
  cheaper than mkdir)."""
  if not os.path.isdir(path) or os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
    os.mkdir(path, 0o700)
  _searchable(path)
  for entry in os.scandir(path):
    if entry.is_dir(follow_symlinks=False):
      shutil.rmtree(entry.path, ignore_errors=True)
    else:
      os.unlink(entry.path)
  if uid is not None:
    os.chown(path, uid, uid)
  os.chmod(path, 0o700)
  return path


class _Job:
  """Per-job state: deadlines, working directory, results."""

  def __init__(self, job: dict):
    self.job = job
    self.deadline = time.monotonic() + float(job["program_timeout_s"])
    self.results = [None] * len(job["tests"])
    self.detail = ""
    self.uid, self.own_namespaces = job["uids"]["program"], bool(job.get("program_namespaces"))
    owner = None if self.own_namespaces else self.uid  # a namespace uid is this process's own
    self.workdir = _fresh_dir(os.path.join(job["tmp_root"], "job"), owner)
    self.reroot, self.root_fds = reroot.open_roots(job.get("import_roots") or [])

  def test_timeout(self) -> float:
    return max(0.0, min(float(self.job["timeout_s"]), self.deadline - time.monotonic()))

  def fork(self, role, fds: dict) -> int:
    table = self.reroot

    def rerooted():
      reroot.apply(table)
      role()
    fds = dict(fds, keep=list(fds.get("keep", ())) + self.root_fds)
    return sandbox_proc.fork_role(rerooted, fds, self.workdir, self.job["limits"], self.uid,
                                  self.own_namespaces)

  def close(self) -> None:
    _close(*self.root_fds)

  def set(self, i: int, status: str, **extra) -> None:
    self.results[i] = dict(status=status, **extra)

  def fill(self, start: int, status: str, detail: str) -> None:
    missing = [i for i in range(start, len(self.results)) if self.results[i] is None]
    for i in missing:
      self.set(i, status)
    if missing:
      self.detail = self.detail or detail


def _pipe_pair():
  (a_r, a_w), (b_r, b_w) = os.pipe(), os.pipe()
  return (a_r, a_w), (b_r, b_w)


def _close(*fds) -> None:
  for fd in fds:
    try:
      os.close(fd)
    except OSError:
      pass


def _run_stdio(state: _Job) -> None:
  job, cap = state.job, int(state.job["max_output_bytes"])
  for i, text in enumerate(job["tests"]):
    timeout = state.test_timeout()
    if timeout <= 0:
      return state.fill(i, "timeout", "program time limit reached")
    in_fd, out_fd = _scratch_fd(state, "stdin", text.encode()), _scratch_fd(state, "stdout", b"")
    pid = state.fork(lambda: program_server.stdio_role(job["program"], job["header"]),
                     {0: in_fd, 1: out_fd})
    status = sandbox_proc.wait_exit(pid, timeout)
    sandbox_proc.kill(pid)
    out = os.pread(out_fd, cap + 1, 0)
    _close(in_fd, out_fd)
    if status is None:
      state.set(i, "timeout")
    elif len(out) > cap or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
      state.set(i, "error")
    else:
      state.set(i, "ok", stdout=out.decode("utf-8", "replace"))


def _scratch_fd(state: _Job, name: str, data: bytes) -> int:
  """An unlinked file in the job directory holding `data`, open read-write at offset 0."""
  path = os.path.join(state.workdir, name)
  fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
  os.unlink(path)
  os.write(fd, data)
  os.lseek(fd, 0, os.SEEK_SET)
  return fd


class _Peer:
  """A forked child with a request pipe and a reply pipe."""

  def __init__(self, state: _Job, role_factory):
    (self.req_r, self.req_w), (self.rep_r, self.rep_w) = _pipe_pair()
    role = role_factory(self.req_r, self.rep_w)
    self.pid = state.fork(role, {"keep": [self.req_r, self.rep_w]})
    _close(self.req_r, self.rep_w)

  def close(self) -> None:
    sandbox_proc.kill(self.pid)
    _close(self.req_w, self.rep_r)


def _start_peer(state: _Job, start: int, role_factory):
  """(peer, ready message) or (None, None) after marking the remaining tests."""
  peer = _Peer(state, role_factory)
  try:
    ready = wire.recv(peer.rep_r, state.test_timeout() or 1e-3)
  except wire.WireError as err:
    peer.close()
    timed_out = "timed out" in str(err)
    state.fill(start, "timeout" if timed_out else "error", f"program start: {err}")
    return None, None
  if not ready.get("ready"):
    peer.close()
    state.fill(start, "error", str(ready.get("error", "program failed"))[:300])
    return None, None
  return peer, ready


def _run_calls(state: _Job) -> None:
  job, peer = state.job, None
  factory = lambda r, w: lambda: program_server.server_role(job["program"], job["header"], r, w)
  for i, args in enumerate(job["tests"]):
    if peer is None:
      peer, _ = _start_peer(state, i, factory)
      if peer is None:
        return
    try:
      wire.send(peer.req_w, {"call": job["fn_name"], "args": args})
      reply = wire.recv(peer.rep_r, state.test_timeout() or 1e-3)
      ok = "ok" in reply
      state.set(i, "ok" if ok else "error", **({"value": reply["ok"]} if ok else {}))
      continue
    except (wire.WireError, OSError) as err:
      state.set(i, _failure_status(err))
    peer.close()
    peer = None
  if peer is not None:
    peer.close()


def _run_judged(state: _Job) -> list[int]:
  """Judged tests; returns the indices the judge could not stand in for."""
  job, start, unsupported = state.job, 0, []
  factory = lambda r, w: lambda: program_server.server_role(job["program"], False, r, w)
  while start < len(job["tests"]):
    server, ready = _start_peer(state, start, factory)
    if server is None:
      return unsupported
    start = _judge_from(state, server, ready["globals"], start, unsupported)
    server.close()
  return unsupported


def _judge_from(state: _Job, server: _Peer, summary: dict, start: int, unsupported: list) -> int:
  """Judge tests from `start` against a running server until done or it breaks; next test."""
  session = judge.Session(state.job, summary, (server.req_w, server.rep_r))
  failed = session.prepare(state.test_timeout())
  if failed is not None:
    status, usable = failed
    indices = range(start, len(state.job["tests"])) if usable else [start]
    for i in indices:
      state.set(i, status)
      if status == "unsupported":
        unsupported.append(i)
    return indices[-1] + 1
  for i in range(start, len(state.job["tests"])):
    timeout = state.test_timeout()
    if timeout <= 0:
      state.fill(i, "timeout", "program time limit reached")
      return len(state.job["tests"])
    status, usable = session.run(i, timeout)
    state.set(i, status)
    if status == "unsupported":
      unsupported.append(i)
    if not usable:
      return i + 1
  return len(state.job["tests"])


def _run_inproc(state: _Job, indices: list[int]) -> None:
  job, peer, allowed = state.job, None, ("pass", "fail", "error", "skipped")
  factory = lambda r, w: lambda: inproc.inproc_role(job, r, w)
  for n, i in enumerate(indices):
    if peer is None:
      peer, _ = _start_peer(state, i, factory)
      if peer is None:
        for j in indices[n:]:
          state.results[j] = state.results[j] or {"status": "error"}
        return
    nonce = secrets.token_hex(16)
    try:
      wire.send(peer.req_w, {"i": i, "nonce": nonce})
      reply = wire.recv(peer.rep_r, state.test_timeout() or 1e-3)
      good = reply.get("nonce") == nonce and reply.get("status") in allowed
      state.set(i, reply["status"] if good else "error")
      if good:
        continue
    except (wire.WireError, OSError) as err:
      state.set(i, _failure_status(err))
    peer.close()
    peer = None
  if peer is not None:
    peer.close()


def _cleanup(job: dict, own_namespace: bool) -> None:
  if own_namespace:
    sandbox_proc.kill_namespace()
  elif not job.get("program_namespaces"):  # there, killing a program's init killed all of it
    sandbox_proc.reap_uid(job["uids"]["program"])


def _limit_self(job: dict) -> None:
  """The judge's test code runs here: bound this process's memory like the program's (soft)."""
  hard = resource.getrlimit(resource.RLIMIT_AS)[1]
  soft = int(job["limits"]["as_bytes"])
  resource.setrlimit(resource.RLIMIT_AS, (soft if hard < 0 else min(soft, hard), hard))


def run_job(job: dict, own_namespace: bool = False) -> dict:
  _limit_self(job)
  state = _Job(job)
  try:
    mode = job["mode"]
    if mode == "stdio":
      _run_stdio(state)
    elif mode == "call":
      _run_calls(state)
    elif mode == "judged":
      fallback = _run_judged(state)
      for i in fallback:
        state.results[i] = None
      _run_inproc(state, fallback)
    else:
      _run_inproc(state, list(range(len(job["tests"]))))
  finally:
    _cleanup(job, own_namespace)
    state.close()
  state.fill(0, "error", "no result")
  return {"id": job["id"], "results": state.results, "detail": state.detail}


def _preload() -> None:
  for name in PRELOAD:
    try:
      __import__(name)
    except Exception:  # pylint: disable=broad-except
      pass
  gc.freeze()  # children's garbage collections then leave the shared pages alone (less CoW)


def main() -> None:
  fd_in, fd_out = os.dup(0), os.dup(1)
  devnull = os.open(os.devnull, os.O_RDWR)
  os.dup2(devnull, 0)
  os.dup2(devnull, 1)
  _preload()
  own_namespace = sandbox_proc.in_own_pid_namespace()
  wire.send(fd_out, {"hello": True, "uid": os.getuid(), "pid": os.getpid(),
                     "own_pid_namespace": own_namespace})
  while True:
    try:
      job = wire.recv(fd_in)
    except wire.WireError:
      return
    if job.get("exit"):
      return
    try:
      reply = run_job(job, own_namespace)
    except Exception as exc:  # pylint: disable=broad-except
      reply = {"id": job.get("id"), "error": f"{type(exc).__name__}: {exc}"}
    wire.send(fd_out, reply)
