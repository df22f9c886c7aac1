"""A world-readable virtual environment under /tmp, for runs as an unprivileged user (needs root).

The project's interpreter may live where other users cannot go (pyenv under /root, mode 0700), so
the environment is a venv of a system interpreter of the same Python version, holding the
distributions restrl_jax requires (hard links into this interpreter's site-packages, copies across
file systems) and this checkout's `restrl_jax` package. Runs go through `setpriv` with a cleared
environment.
"""
from __future__ import annotations

import ast
import importlib.metadata as metadata
import os
import pathlib
import shutil
import stat
import subprocess
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

UID = 65534  # nobody
PROJECT = "restrl_jax"
REPO = pathlib.Path(__file__).resolve().parents[1]


def _reachable_by_others(path: pathlib.Path) -> bool:
  """Every directory above `path` is searchable, and `path` executable, by any user."""
  real = path.resolve()
  dirs_ok = all(p.stat().st_mode & stat.S_IXOTH for p in real.parents)
  return dirs_ok and bool(real.stat().st_mode & stat.S_IXOTH)


def system_python() -> str | None:
  """A system interpreter of this Python's version that other users can run, or None."""
  version = f"{sys.version_info.major}.{sys.version_info.minor}"
  for folder in ("/usr/bin", "/usr/local/bin"):
    candidate = pathlib.Path(folder) / f"python{version}"
    if candidate.exists() and _reachable_by_others(candidate):
      return str(candidate)
  return None


def core_requirements() -> list[str]:
  """The checkout's core install requirements (`CORE` in setup.py)."""
  tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
  for node in tree.body:
    if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["CORE"]:
      return list(ast.literal_eval(node.value))
  raise ValueError("setup.py defines no CORE list")


def required_distributions() -> list[metadata.Distribution]:
  """The installed distributions the checkout's core requirements need, transitively."""
  todo = [Requirement(r).name for r in core_requirements()]
  found: dict[str, metadata.Distribution] = {}
  while todo:
    name = canonicalize_name(todo.pop())
    if name in found:
      continue
    found[name] = dist = metadata.distribution(name)
    for req in map(Requirement, dist.requires or []):
      if req.marker is None or req.marker.evaluate({"extra": ""}):
        todo.append(req.name)
  return list(found.values())


def _link_or_copy(source: pathlib.Path, dest: pathlib.Path) -> None:
  if dest.exists():  # a file two distributions share
    return
  dest.parent.mkdir(parents=True, exist_ok=True)
  try:
    os.link(source, dest)
  except OSError:
    shutil.copy2(source, dest)


def _install(dist: metadata.Distribution, site: pathlib.Path) -> None:
  for entry in dist.files or []:
    if entry.parts and entry.parts[0] == "..":  # console scripts outside site-packages
      continue
    source = pathlib.Path(dist.locate_file(entry))
    if source.is_file():
      _link_or_copy(source, site / entry)


def _open_up(root: pathlib.Path) -> None:
  """Directories 0755 and files readable by everybody (links share their source's mode)."""
  for folder, _, files in os.walk(root):
    os.chmod(folder, 0o755)
    for name in files:
      path = os.path.join(folder, name)
      mode = os.stat(path).st_mode
      if not mode & stat.S_IROTH:
        os.chmod(path, mode | stat.S_IRGRP | stat.S_IROTH)


def build(dest: pathlib.Path, python: str) -> pathlib.Path:
  """A venv at `dest` (under /tmp) of `python` with restrl_jax and what it needs; its python."""
  subprocess.run([python, "-m", "venv", "--without-pip", str(dest)], check=True)
  venv_python = dest / "bin" / "python"
  site = pathlib.Path(subprocess.run(
      [str(venv_python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
      check=True, capture_output=True, text=True).stdout.strip())
  for dist in required_distributions():
    _install(dist, site)
  shutil.copytree(REPO / PROJECT, site / PROJECT)
  _open_up(dest)
  return venv_python


def as_user(argv: list[str], uid: int = UID) -> list[str]:
  """`argv` run as `uid` (no supplementary groups)."""
  return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--", *argv]


def user_env(**extra: str) -> dict[str, str]:
  """A minimal environment for runs as the unprivileged user."""
  return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp",
          "PYTHONDONTWRITEBYTECODE": "1", "JAX_PLATFORMS": "cpu", **extra}
