"""Processes inside the sandbox: fork a child into a role, wait for it with a deadline, reap a uid.

A child is forked from the zygote, starts a new session, keeps only the descriptors it is given
(everything else, including the zygote's channel to the host, is closed), sets its resource limits
and drops to an unprivileged uid before it runs any code it was given. `reap_uid` kills every
process of a uid, which is how nothing of a finished program survives: the process group is not
enough because a program can start new sessions.

Standalone: stdlib only, no package imports (it is part of the sandbox payload).
"""
import os
import resource
import select
import signal
import time

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


def _enter(fds: dict, cwd: str, uid, limits: dict) -> None:
  """Child side of `fork_role`: fd 0/1/2 from `fds`, nothing else open but `fds["keep"]`."""
  os.setsid()
  devnull = os.open(os.devnull, os.O_RDWR)
  for target in (0, 1, 2):
    os.dup2(fds.get(target, devnull), target)
  keep = sorted(set(fds.get("keep", ())) | {0, 1, 2})
  start = 0
  for fd in keep + [1 << 20]:
    if start < fd:  # closerange(n, n) would close everything on some Pythons
      os.closerange(start, fd)
    start = fd + 1
  for fd in keep:
    os.set_inheritable(fd, True)
  os.chdir(cwd)
  apply_limits(limits)
  drop_privileges(uid)


def fork_role(role, fds: dict, cwd: str, uid, limits: dict) -> int:
  """Fork a child that enters the sandbox role and runs `role()`; returns its pid."""
  pid = os.fork()
  if pid:
    return pid
  code = 70
  try:
    _enter(fds, cwd, uid, limits)
    role()
    code = 0
  except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
  except BaseException:  # pylint: disable=broad-except
    code = 71
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
