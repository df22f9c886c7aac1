"""Expected outputs from reference solutions, computed in child processes and cached on disk.

`compute_outputs` runs `reference_child` over chunks of tasks in parallel; a chunk that dies or
overruns is retried task by task so one bad reference cannot lose the others. `cached_outputs`
keeps results in one JSON file per namespace under `io.cache_dir()`, keyed by a digest of each
task's content (program, function, inputs), so a changed data file or a different test cap never
reads stale outputs. A crashed child process is not cached (it may not recur); a reference that
overruns the per-call limit is (it is too slow for a test). Children run with PYTHONHASHSEED=0.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import pathlib
import subprocess
import sys
from typing import Any, Sequence

from restrl_jax.data import io, json_codec

_PACKAGE_ROOT = str(pathlib.Path(__file__).resolve().parents[2])
Outcome = dict[str, Any]        # {"ok": encoded value, "seconds": t} or {"error": message}


@dataclasses.dataclass(frozen=True)
class ReferenceTask:
  program: str
  fn_name: str
  inputs: tuple[Any, ...]       # one argument list per test (Python values)
  not_none: bool = False        # report `result is not None` instead of the result

  def request(self) -> dict[str, Any]:
    return {"program": self.program, "fn_name": self.fn_name, "not_none": self.not_none,
            "inputs": [json_codec.encode(list(x)) for x in self.inputs]}

  def digest(self) -> str:
    text = json.dumps(self.request(), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _failed(tasks: Sequence[ReferenceTask], why: str) -> list[list[Outcome]]:
  return [[{"error": why}] * len(t.inputs) for t in tasks]


def _run_chunk(tasks: Sequence[ReferenceTask], timeout_s: float,
               max_output_chars: int) -> list[list[Outcome]]:
  request = {"timeout_s": timeout_s, "max_output_chars": max_output_chars,
             "tasks": [t.request() for t in tasks]}
  budget = 10.0 + timeout_s * sum(len(t.inputs) for t in tasks)
  env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=os.pathsep.join(
      p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p))
  try:
    proc = subprocess.run([sys.executable, "-m", "restrl_jax.data.reference_child"],
                          input=json.dumps(request), capture_output=True, text=True,
                          timeout=budget, env=env, check=False)
  except subprocess.TimeoutExpired:
    return _failed(tasks, f"reference process overran {budget:.0f} s")
  if proc.returncode != 0:
    return _failed(tasks, f"reference process exited {proc.returncode}: {proc.stderr[-300:]}")
  return json.loads(proc.stdout)


def _run_chunk_safely(tasks: Sequence[ReferenceTask], *limits) -> list[list[Outcome]]:
  results = _run_chunk(tasks, *limits)
  crashed = any("reference process" in o.get("error", "") for r in results for o in r)
  if len(tasks) == 1 or not crashed:
    return results
  return [_run_chunk([t], *limits)[0] for t in tasks]


def compute_outputs(tasks: Sequence[ReferenceTask], timeout_s: float = 60.0,
                    max_output_chars: int = 1_000_000, chunk_size: int = 16,
                    workers: int | None = None) -> list[list[Outcome]]:
  """One outcome list per task (same order); `timeout_s` limits each call, `max_output_chars`
  the size of one encoded output."""
  chunks = [tasks[i:i + chunk_size] for i in range(0, len(tasks), chunk_size)]
  workers = workers or max(1, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    parts = list(pool.map(lambda c: _run_chunk_safely(c, timeout_s, max_output_chars), chunks))
  return [outcomes for part in parts for outcomes in part]


def _transient(outcomes: list[Outcome]) -> bool:
  return any("reference process" in o.get("error", "") for o in outcomes)


def _read_cache(path: pathlib.Path) -> dict[str, list[Outcome]]:
  try:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
  except (json.JSONDecodeError, OSError):
    return {}   # a damaged cache is recomputed


def cached_outputs(namespace: str, tasks: Sequence[ReferenceTask], timeout_s: float = 60.0,
                   max_output_chars: int = 1_000_000, **kwargs: Any) -> list[list[Outcome]]:
  """`compute_outputs`, reading and extending the cache file `<cache_dir>/<namespace>.json`."""
  path = io.cache_dir() / f"{namespace}-outputs.json"
  cache = _read_cache(path)
  keys = [f"{t.digest()}:{timeout_s:g}:{max_output_chars}" for t in tasks]
  missing = [(k, t) for k, t in zip(keys, tasks) if k not in cache]
  computed = compute_outputs([t for _, t in missing], timeout_s=timeout_s,
                             max_output_chars=max_output_chars, **kwargs) if missing else []
  fresh = {k: out for (k, _), out in zip(missing, computed)}
  durable = {k: out for k, out in fresh.items() if not _transient(out)}
  if durable:
    cache.update(durable)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(cache), encoding="utf-8")
    os.replace(tmp, path)
  return [cache[k] if k in cache else fresh[k] for k in keys]
