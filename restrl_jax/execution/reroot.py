"""Imports for a program whose uid cannot reach the Python installation (rlimits level as root).

Without bubblewrap the program runs on the host's filesystem under an unprivileged uid, and the
interpreter may live under a directory that uid cannot enter (e.g. pyenv under /root, mode 0700):
then only modules the zygote had already imported work, and `import cmath` fails. So the zygote
(root) opens each installation root as an `O_PATH` descriptor that the program's process keeps;
in that process `sys.path` and the packages' `__path__` entries are pointed at
`/proc/self/fd/<n>/...`, a path the kernel resolves from the open directory without searching
the directories above it. Only what lies under the roots (the Python installation) becomes
reachable, read-only as its file modes say; at this level there is no filesystem isolation anyway.

Standalone: stdlib only, no package imports (it is part of the sandbox payload).
"""
import os
import sys


def open_roots(pairs) -> tuple:
  """([(prefix, fd path)], [fds]) for `pairs` of (prefix, real directory) that exist."""
  table, fds, opened = [], [], {}
  for prefix, real in pairs:
    if real not in opened:
      try:
        opened[real] = os.open(real, os.O_PATH | os.O_DIRECTORY)
      except OSError:
        continue
      fds.append(opened[real])
    table.append((prefix.rstrip("/") or "/", f"/proc/self/fd/{opened[real]}"))
  table.sort(key=lambda entry: -len(entry[0]))  # longest prefix first
  return table, fds


def _translate(path, table):
  if not isinstance(path, str):
    return path
  for prefix, target in table:
    if path == prefix or path.startswith(prefix + "/"):
      return target + path[len(prefix):]
  return path


def apply(table) -> None:
  """Point the import system at the descriptors (run in the program's process)."""
  if not table:
    return
  sys.path[:] = [_translate(p, table) for p in sys.path]
  for module in list(sys.modules.values()):
    path = getattr(module, "__path__", None)
    if isinstance(path, list):
      path[:] = [_translate(p, table) for p in path]
  sys.path_importer_cache.clear()
