"""Child process that runs trusted reference solutions and reports their return values.

Protocol: stdin holds JSON `{"timeout_s": t, "max_output_chars": m, "tasks": [{"program",
"fn_name", "not_none", "inputs"}]}` with inputs encoded by `json_codec.encode`; stdout receives one
list per task with `{"ok": encoded value, "seconds": t}` or `{"error": message}` per input (an
output whose encoding exceeds m characters is an error: too large to serve as a test). Used to
compute MBPP+ expected outputs (as evalplus does, by running the canonical solution); the code run
here is data-set reference code, not model output.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import sys
import time
from typing import Any

from restrl_jax.data import json_codec


class _Timeout(Exception):
  pass


def _on_alarm(signum, frame):
  raise _Timeout()


def _call(fn, args: list[Any], limits: dict[str, Any], not_none: bool) -> dict[str, Any]:
  args, timeout_s = copy.deepcopy(args), limits["timeout_s"]
  start = time.perf_counter()
  signal.setitimer(signal.ITIMER_REAL, timeout_s)
  try:
    result = fn(*args)
    seconds = time.perf_counter() - start
    encoded = json_codec.encode(result is not None if not_none else result)
    size, cap = len(json.dumps(encoded)), limits["max_output_chars"]
    if size > cap:
      return {"error": f"output of {size} characters exceeds the cap of {cap}"}
    return {"ok": encoded, "seconds": seconds}
  except _Timeout:
    return {"error": f"timed out after {timeout_s} s"}
  except BaseException as e:  # pylint: disable=broad-except
    return {"error": f"{type(e).__name__}: {e}"[:300]}
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)


def run_task(task: dict[str, Any], limits: dict[str, Any]) -> list[dict[str, Any]]:
  inputs = [json_codec.decode(x) for x in task["inputs"]]
  namespace: dict[str, Any] = {"__name__": "__reference__"}
  try:
    exec(compile(task["program"], "<reference>", "exec"), namespace)  # pylint: disable=exec-used
    fn = namespace[task["fn_name"]]
  except BaseException as e:  # pylint: disable=broad-except
    return [{"error": f"reference does not load: {type(e).__name__}: {e}"[:300]}] * len(inputs)
  return [_call(fn, args, limits, task.get("not_none", False)) for args in inputs]


def main() -> None:
  request = json.load(sys.stdin)
  signal.signal(signal.SIGALRM, _on_alarm)
  sys.setrecursionlimit(10_000)
  with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
    results = [run_task(task, request) for task in request["tasks"]]
  json.dump(results, sys.stdout)


if __name__ == "__main__":
  main()
