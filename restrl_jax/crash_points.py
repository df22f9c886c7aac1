"""Deterministic kill points, for the tests that SIGKILL a run mid-write and resume it.

`RESTRL_KILL_AT=<kind>:<path suffix>:<n>` makes the process SIGKILL itself the n-th time it
reaches a point of that kind for a path ending in the suffix. Kinds (where they are reached):

  checkpoint    `checkpoint.Checkpointer.save`: the save has started, not finished or committed;
                the path is the checkpoint folder, e.g. `warmstart/checkpoints`;
  atomic_write  `io_utils.atomic_write_text`: the new text is in the temporary file, not yet
                renamed over the path, e.g. `decode/best_of_n.jsonl`;
  atomic_dir    `io_utils.atomic_dir`: the new folder is complete, not yet swapped in.

Without the variable (every normal run) `reached` does nothing.
"""
from __future__ import annotations

import collections
import os
import signal

ENV = "RESTRL_KILL_AT"
_counts: collections.Counter = collections.Counter()


def reached(kind: str, path: str | os.PathLike) -> None:
  spec = os.environ.get(ENV)
  if not spec:
    return
  want_kind, rest = spec.split(":", 1)
  suffix, n = rest.rsplit(":", 1)
  if kind != want_kind or not os.fspath(path).endswith(suffix):
    return
  _counts[spec] += 1
  if _counts[spec] == int(n):
    os.kill(os.getpid(), signal.SIGKILL)
