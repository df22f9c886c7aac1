"""The hostile programs through the evaluation CLI and through a GRPO step, as whoever runs this.

    python tests/hostile_run.py WORKDIR    # prints one JSON report (tests/test_sandbox_users.py)

1. `python -m restrl_jax.evaluate` on a HumanEval-style file whose samples are every hostile
   program (a `check` problem on `add`).
2. A trainer process: threads of its own stay alive while a fork bomb and a thread bomb run in the
   sandbox, and it then starts a thread and a subprocess.
3. One GRPO step whose sampled completions are the hostile programs (the sampler's texts are
   replaced: the narrowest seam, `GRPOTrainer(sampler=...)`), each with its own suite; then a
   thread and a subprocess again, and no process left in the sandboxes but their zygotes.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import hostile_programs as hp

PROGRAM_TIMEOUT_S = 1.5
WORKERS = 4


def _descendants(root: int) -> list[int]:
  children: dict[int, list[int]] = {}
  for entry in pathlib.Path("/proc").iterdir():
    if entry.name.isdigit():
      try:
        fields = dict(l.split(":", 1) for l in (entry / "status").read_text().splitlines())
      except (OSError, ValueError):
        continue
      children.setdefault(int(fields["PPid"]), []).append(int(entry.name))
  out, todo = [], [root]
  while todo:
    kids = children.get(todo.pop(), [])
    out += kids
    todo += kids
  return out


def _nspid(pid: int) -> list[str]:
  try:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
      if line.startswith("NSpid:"):
        return line.split()[1:]
  except OSError:
    pass
  return []


def leftover_processes(pool) -> list[list[str]]:
  """Processes in the pool's sandboxes other than bubblewrap's init (1) and the zygote (2)."""
  found = []
  for worker in pool._workers:  # pylint: disable=protected-access
    if worker.proc is not None:
      found += [ns for ns in map(_nspid, _descendants(worker.proc.pid))
                if ns and ns[1:] not in (["1"], ["2"])]
  return found


def sandbox_tasks(pool) -> int:
  """Tasks (processes and threads) in the pool's sandboxes."""
  total = 0
  for worker in pool._workers:  # pylint: disable=protected-access
    for pid in _descendants(worker.proc.pid) if worker.proc is not None else []:
      try:
        total += len(os.listdir(f"/proc/{pid}/task"))
      except OSError:
        pass
  return total


def host_can_start_work() -> bool:
  """A new thread and a new subprocess, as a trainer starts them."""
  done = []
  thread = threading.Thread(target=lambda: done.append(True))
  thread.start()
  thread.join(10)
  child = subprocess.run([sys.executable, "-I", "-S", "-c", "print('alive')"],
                         capture_output=True, text=True, timeout=60, check=False)
  return done == [True] and child.stdout.strip() == "alive"


def run_cli(workdir: pathlib.Path, ctx: dict, names: list[str]) -> dict:
  data, samples = workdir / "problems.jsonl", workdir / "samples.jsonl"
  data.write_text(json.dumps({
      "task_id": "hostile/add", "prompt": "import os\n", "canonical_solution": "",
      "entry_point": "add",
      "test": "def check(candidate):\n  assert candidate(1, 2) == 3\n  assert candidate(3, 4) == 7\n"
  }) + "\n")
  samples.write_text("".join(json.dumps({"task_id": "hostile/add", "completion": p}) + "\n"
                             for p in hp.programs(names, ctx)))
  out = workdir / "cli_results.jsonl"
  done = subprocess.run(
      [sys.executable, "-m", "restrl_jax.evaluate", "--benchmark", "humaneval", "--data", str(data),
       "--samples", str(samples), "--out", str(out), "--k", "1", "--workers", str(WORKERS),
       "--program-timeout", str(PROGRAM_TIMEOUT_S), "--no-progress"],
      capture_output=True, text=True, timeout=600, check=False)
  rows = [json.loads(l) for l in out.read_text().splitlines()] if out.exists() else []
  return {"returncode": done.returncode, "stderr": done.stderr[-2000:],
          "summary": json.loads(done.stdout) if done.returncode == 0 else None,
          "rewards": {n: r["pass_fraction"] for n, r in zip(names, rows)},
          "isolation": sorted({r["isolation"] for r in rows})}


def bombs_while_trainer_threads_live(pool, ctx: dict) -> dict:
  stop = threading.Event()
  live = [threading.Thread(target=stop.wait, daemon=True) for _ in range(8)]
  for thread in live:
    thread.start()
  future = pool.submit(hp.programs(["fork_bomb", "thread_bomb"], ctx),
                       [hp.HOSTILE["fork_bomb"][1], hp.HOSTILE["thread_bomb"][1]])
  time.sleep(PROGRAM_TIMEOUT_S / 2)  # both bombs at their limit by now
  tasks = sandbox_tasks(pool)
  running = not future.done()
  work = host_can_start_work()
  alive = all(t.is_alive() for t in live)
  rewards = [r.reward for r in future.result()]
  stop.set()
  return {"bombs_running": running, "sandbox_tasks": tasks, "host_work_during_bombs": work,
          "trainer_threads_alive": alive, "bomb_rewards": rewards}


class _HostileSampler:
  """Stands in for the policy's sampler: the real sampler's output, with its texts replaced by
  `texts[row id]`."""

  def __init__(self, sampler, texts: list[str]):
    self.sampler, self.texts = sampler, texts
    self.feed, self.tokenizer = sampler.feed, sampler.tokenizer

  def generate(self, *args, row_ids=None, **kwargs):
    outs = self.sampler.generate(*args, row_ids=row_ids, **kwargs)
    rows = range(len(outs)) if row_ids is None else row_ids
    return [c._replace(text=self.texts[int(r)]) for c, r in zip(outs, rows)]


def grpo_step(pool, ctx: dict, names: list[str]) -> dict:
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from restrl_jax import models, training  # pylint: disable=import-outside-toplevel
  from restrl_jax.data.problem import Problem  # pylint: disable=import-outside-toplevel
  from restrl_jax.rl.trainer import GRPOConfig, GRPOTrainer, Request  # pylint: disable=import-outside-toplevel
  from restrl_jax.sampling.sampler import Sampler  # pylint: disable=import-outside-toplevel
  from restrl_jax.tokenizer import embedded_tokenizer  # pylint: disable=import-outside-toplevel
  from restrl_jax.warmstart import policy_config  # pylint: disable=import-outside-toplevel

  tok = embedded_tokenizer()
  config = dataclasses.replace(policy_config(tok), num_layers=1, hidden_size=32, num_heads=2,
                               num_kv_heads=1, head_dim=16, intermediate_size=64)
  requests = [Request(Problem(id=n, source="hostile", prompt=f"task {n}", starter_code="",
                              tests=hp.HOSTILE[n][1]), "") for n in names]
  group = 2  # row 0 of each group: the hostile program; row 1: an empty program
  texts = [t for program in hp.programs(names, ctx) for t in (program, "")]
  cfg = GRPOConfig(group_size=group, prompts_per_step=len(names), max_new_tokens=2,
                   max_prompt_tokens=16, temperature=1.0)
  optimizer = training.make_optimizer(1e-3, 10, schedule="constant")
  sampler = _HostileSampler(Sampler(config, None, tok), texts)
  trainer = GRPOTrainer(config, tok, cfg, optimizer, pool, sampler=sampler)
  params = models.init_params(config, jax.random.key(0))
  state = training.init_train_state(params, optimizer)
  state, metrics, ro = trainer.step(state, params, lambda n: requests[:n], jax.random.key(1))
  hostile_rows = np.asarray(ro.exec_reward)[::group]
  return {"step": int(state.step), "finite": bool(all(np.isfinite(v) for v in metrics.values())),
          "programs_executed": list(ro.programs[::group]) == texts[::group],
          "rewards": {n: float(r) for n, r in zip(names, hostile_rows)}}


def main(workdir: str) -> None:
  from restrl_jax.execution import ExecutionPool, Limits  # pylint: disable=import-outside-toplevel
  workdir = pathlib.Path(workdir)
  names = list(hp.HOSTILE)
  report = {"uid": os.getuid()}
  start = time.monotonic()
  with hp.context(workdir) as ctx:
    report["cli"] = run_cli(workdir, ctx, names)
    report["seconds_cli"] = time.monotonic() - start
    limits = Limits(memory_mb=512, program_timeout_s=PROGRAM_TIMEOUT_S, max_output_bytes=1 << 20)
    with ExecutionPool(num_workers=WORKERS, limits=limits) as pool:
      report["isolation"] = pool.isolation
      report["bombs"] = bombs_while_trainer_threads_live(pool, ctx)
      report["seconds_bombs"] = time.monotonic() - start
      report["grpo"] = grpo_step(pool, ctx, names)
      report["seconds_grpo"] = time.monotonic() - start
      report["host_work_after_step"] = host_can_start_work()
      time.sleep(0.5)
      report["leftover_processes"] = leftover_processes(pool)
    report["host_intact"] = hp.host_intact(ctx)
  print(json.dumps(report))


if __name__ == "__main__":
  main(sys.argv[1])
