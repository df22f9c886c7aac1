"""Processes inside the sandbox: fork a child into a role, wait for it with a deadline, reap a uid.

A child is forked from the zygote, starts a new session, keeps only the descriptors it is given
(everything else, including the zygote's channel to the host, is closed), sets its resource limits
and takes the program's identity before it runs any code it was given:
  * a host uid (`uid`, sandbox started by root): the child drops to that unprivileged uid;
    `reap_uid` kills every process of the uid, which is how nothing of a finished program
    survives (the process group is not enough because a program can start new sessions);
  * its own namespaces (`own_namespaces`, sandbox started by an ordinary user): the child enters
    a new user and pid namespace (see `namespaces`), limits and capabilities are set there, and
    the program runs under a trusted init (`_run_init`); the pid returned is that init's, and
    killing it kills every process of the program;
  * neither (`uid` None, rlimits level without root): only the session and the limits.

Standalone: stdlib and the payload module `namespaces` only (it is part of the sandbox payload).
"""
import os
import resource
import select
import signal
import time

from restrl_jax.execution import namespaces

_MAX_FD = 1 << 20

_LIMITS = {
    "as_bytes": resource.RLIMIT_AS,
    "cpu_s": resource.RLIMIT_CPU,
    "fsize_bytes": resource.RLIMIT_FSIZE,
    "nproc": resource.RLIMIT_NPROC,
    "nofile": resource.RLIMIT_NOFILE,
    "core_bytes": resource.RLIMIT_CORE,
}


def apply_limits(limits: dict) -> None:
  for key, value in limits.items():
    if value is not None:
      resource.setrlimit(_LIMITS[key], (int(value), int(value)))


def drop_privileges(uid) -> None:
  if uid is None:
    return
  os.setgroups([])
  os.setresgid(uid, uid, uid)
  os.setresuid(uid, uid, uid)
  if os.getuid() != uid or os.geteuid() != uid:
    raise RuntimeError(f"could not drop to uid {uid}")


def _enter(fds: dict, cwd: str) -> None:
  """New session; fd 0/1/2 from `fds`, nothing else open but `fds["keep"]`; cwd `cwd`."""
  os.setsid()
  devnull = os.open(os.devnull, os.O_RDWR)
  for target in (0, 1, 2):
    os.dup2(fds.get(target, devnull), target)
  keep = sorted(set(fds.get("keep", ())) | {0, 1, 2})
  start = 0
  for fd in keep + [_MAX_FD]:
    if start < fd:  # closerange(n, n) would close everything on some Pythons
      os.closerange(start, fd)
    start = fd + 1
  for fd in keep:
    os.set_inheritable(fd, True)
  os.chdir(cwd)


def _run(role, setup=lambda: None) -> None:
  """`setup()` then `role()` in this (forked) process, which then exits: 0 when the role returned,
  its code on SystemExit, 70/71 when setup/the role raised. Never returns."""
  code = 70
  try:
    setup()
    code = 71
    role()
    code = 0
  except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
  except BaseException:  # pylint: disable=broad-except
    pass
  finally:
    os._exit(code)


def fork_role(role, fds: dict, cwd: str, limits: dict, uid=None,
              own_namespaces: bool = False) -> int:
  """Fork a child that enters the sandbox role as the program (see the module docstring) and runs
  `role()`; returns the pid to wait for and to kill."""
  if own_namespaces:
    return _fork_in_namespaces(role, fds, cwd, limits, uid)
  pid = os.fork()
  if pid == 0:
    def setup():
      _enter(fds, cwd)
      apply_limits(limits)
      drop_privileges(uid)
    _run(role, setup)
  return pid


def _fork_in_namespaces(role, fds: dict, cwd: str, limits: dict, uid: int) -> int:
  """A child enters new user and pid namespaces, sets the limits there, drops every capability
  and forks the namespace's init (which runs `role` in its own child); it reports the init's pid
  and exits, so the init becomes this process's child (this process is made its subreaper)."""
  namespaces.guard_zygote()
  report_r, report_w = os.pipe()
  pid = os.fork()
  if pid == 0:
    report = "error"
    try:
      os.close(report_r)
      _enter(dict(fds, keep=list(fds.get("keep", ())) + [report_w]), cwd)
      namespaces.enter(uid)
      apply_limits(limits)
      namespaces.drop_capabilities()
      init = os.fork()
      if init == 0:
        os.close(report_w)
        _run_init(role)
      report = str(init)
    except BaseException as exc:  # pylint: disable=broad-except
      report = f"{type(exc).__name__}: {exc}"
    finally:
      os.write(report_w, report.encode()[:4096])
      os._exit(0)
  os.close(report_w)
  try:
    report = _read_to_end(report_r).decode(errors="replace")
  finally:
    os.close(report_r)
    os.waitpid(pid, 0)
  if not report.isdigit():
    raise RuntimeError(f"could not give the program its own namespaces: {report}")
  return int(report)


def _read_to_end(fd: int) -> bytes:
  chunks = []
  while chunk := os.read(fd, 4096):
    chunks.append(chunk)
  return b"".join(chunks)


def _run_init(role) -> None:
  """Pid 1 of a program's pid namespace: runs `role` in its child, reaps every orphan and exits
  with the program's status (128 + signal when it was killed); the kernel then kills whatever is
  left in the namespace. It keeps no descriptor, and as pid 1 it gets only the signals it
  handles, of which it handles none. Never returns."""
  code = 70
  try:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    program = os.fork()
    if program == 0:
      signal.signal(signal.SIGINT, signal.default_int_handler)
      _run(role)
    os.closerange(0, _MAX_FD)
    while True:
      pid, status = os.waitpid(-1, 0)
      if pid == program:
        code = os.waitstatus_to_exitcode(status)
        code = code if code >= 0 else 128 - code
        break
  finally:
    os._exit(code)


def wait_exit(pid: int, timeout: float | None):
  """Exit status of `pid`, or None when it is still running after `timeout` seconds."""
  try:
    pidfd = os.pidfd_open(pid)
  except ProcessLookupError:
    pidfd = None
  try:
    if pidfd is not None:
      ready = select.select([pidfd], [], [], timeout)[0]
      if not ready:
        return None
    _, status = os.waitpid(pid, 0)
    return status
  except ChildProcessError:
    return 0
  finally:
    if pidfd is not None:
      os.close(pidfd)


def kill(pid: int) -> None:
  """SIGKILL the child's whole session/process group and collect the child."""
  for action in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
    try:
      action()
    except (ProcessLookupError, PermissionError):
      pass
  try:
    os.waitpid(pid, 0)
  except ChildProcessError:
    pass


def _reaper(uid: int) -> None:
  # kill(-1) signals every process of this uid (but the caller) under the tasklist lock, so
  # processes cannot fork past it; it does not report whether any existed, so repeat it.
  drop_privileges(uid)
  for _ in range(3):
    os.kill(-1, signal.SIGKILL)
    time.sleep(0.0005)


def reap_uid(uid) -> None:
  """Kill every process running as `uid` (no-op for None: the weaker fallback)."""
  if uid is None:
    return
  pid = os.fork()
  if pid == 0:
    code = 0
    try:
      _reaper(uid)
    except BaseException:  # pylint: disable=broad-except
      code = 1
    os._exit(code)
  os.waitpid(pid, 0)


def in_own_pid_namespace() -> bool:
  """True when this process is pid 2 under bubblewrap's init, i.e. alone in its pid namespace."""
  try:
    with open("/proc/1/comm", encoding="ascii") as f:
      init = f.read().strip()
  except OSError:
    return False
  return os.getpid() == 2 and os.getppid() == 1 and init == "bwrap"


def kill_namespace() -> None:
  """Kill every process of this pid namespace but init and the caller, and collect children.

  Only for a zygote alone in its namespace (`in_own_pid_namespace`): kill(-1) from root reaches
  every process it may signal, which there is exactly the jobs' processes."""
  for _ in range(2):
    try:
      os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:  # nobody left
      break
  while True:
    try:
      os.waitpid(-1, 0)
    except ChildProcessError:
      return


def probe(uid: int, own_namespaces: bool) -> None:
  """Start one child the way the zygote starts a program and check that it ran as `uid` (and, in
  its own namespaces, as pid 2 under the trusted init); prints "ok", or exits with the reason."""
  read_fd, write_fd = os.pipe()
  role = lambda: os.write(write_fd, f"{os.getuid()} {os.getpid()}".encode())
  try:
    pid = fork_role(role, {"keep": [write_fd]}, "/", {}, uid, own_namespaces)
  except (OSError, RuntimeError) as err:
    raise SystemExit(f"starting a program failed: {err}") from None
  os.close(write_fd)
  status = wait_exit(pid, 10.0)
  kill(pid)
  seen = _read_to_end(read_fd).decode(errors="replace").split()
  expected = [str(uid), "2"] if own_namespaces else [str(uid)]
  if status is None or seen[:len(expected)] != expected:
    raise SystemExit(f"a program did not start as expected (uid, pid {seen}, status {status})")
  print("ok")
