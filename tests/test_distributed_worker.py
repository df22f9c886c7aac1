"""One process of the multi-process test (no tests here; `test_distributed.py` runs it).

    python tests/test_distributed_worker.py --process-id 0 --num-processes 2 --port 12345 \
        --out DIR [--jobs sft,grpo,rest,search] [--steps 3] [--policy HF_DIR]

Joins the cluster (coordinator on localhost), builds a mesh over every process's devices and
runs each job: a few training steps where every process feeds only its own rows, an orbax
checkpoint saved from every process (DIR/ckpt_<job>), and (process 0 only) the gathered final
params written to DIR/<job>.npz; every process writes its per-step metrics to
DIR/<job>.<process id>.json. With --num-processes 1 (8 devices) it is the reference run.

A job is `JOBS[name](mesh) -> Job`: its initial state on the mesh and `run_step(state, i)`.
  sft        : this process's `local_slice` of a fixed global batch -> `global_batch` -> update;
  grpo       : `GRPOTrainer` whose sampler has a `HostRowFeed` - this host's prompts sampled,
               run in its own sandbox pool and scored here, the update on the global batch;
  grpo_plain : the plain `GRPOTrainer` (every row on this process): the one-process reference.

`rest` is a whole pipeline run instead (`run_rest`, what test_distributed.py runs): one `rest_grpo` round of `--steps` steps
from the HF policy `--policy`, through `pipeline.runner.run_pipeline` (a registered stage that
calls `rl.rounds.run_rounds`): collection split by host and gathered, GRPO steps on each
host's rows (one process: every row here), export through `distributed.gather`. It writes DIR/rest.npz (the
exported policy's params, process 0), DIR/rest.<pid>.json (per-step metrics, rollouts executed
here) and DIR/rest_writes.<pid>.json (the files this process wrote itself).

`search` is a pipeline run of the search stages (`run_search`): collect_values -> train_value ->
decode on `search_config` (the demo config's quick settings, tiny) in DIR/work_search: each
process searches its share of the problems in its own sandbox pool, the value model trains on the
mesh. It writes DIR/search.<pid>.json (programs run in this process's pools) and
DIR/search_writes.<pid>.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable, NamedTuple

GLOBAL_BATCH, SEQ_LEN, VOCAB = 16, 24, 128
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Job(NamedTuple):
  state: Any                                                  # a TrainState on the mesh
  run_step: Callable[[Any, int], tuple[Any, dict[str, float]]]  # (state, step i) -> metrics
  close: Callable[[], None] = lambda: None


def _sft_job(mesh) -> Job:
  import dataclasses
  import numpy as np
  from restrl_jax import distributed, memory_plan, models, parallel
  from restrl_jax.training import make_optimizer, make_train_step, sft_loss

  config = dataclasses.replace(models.get_preset("tiny"), vocab_size=VOCAB, num_layers=2)
  # eps 1e-4, not 1e-8: Adam's g / sqrt(v) turns summation-order noise (1e-9) in a near-zero
  # gradient into a full-size step, which no two device layouts would reproduce
  optimizer = make_optimizer(1e-2, total_steps=10, schedule="constant", eps=1e-4)
  abstract, shardings = memory_plan.abstract_train_state(config, mesh, optimizer)
  state = _host_init(abstract, shardings, seed=0)
  step = make_train_step(lambda p, b: sft_loss(config, p, b), optimizer, mesh, shardings)

  def make_batch(i: int) -> dict:
    rng = np.random.default_rng(100)  # the same batch each step: the loss must fall
    tokens = rng.integers(3, VOCAB, (GLOBAL_BATCH, SEQ_LEN)).astype(np.int32)
    mask = np.ones_like(tokens)
    mask[::3, : SEQ_LEN // 4] = 0                  # some left padding
    loss_mask = mask.copy()
    loss_mask[:, : SEQ_LEN // 2] = 0               # learn the second half
    return {"tokens": tokens, "attention_mask": mask, "loss_mask": loss_mask}

  def run_step(state, i: int):
    local = {k: distributed.local_slice(v) for k, v in make_batch(i).items()}
    state, metrics = step(state, distributed.global_batch(local, parallel.batch_sharding(mesh, 2)))
    return state, {"loss": float(distributed.replicated_value(metrics["loss"]))}

  return Job(state, run_step)


GRPO_TIMINGS = ("sample_s", "ref_s", "exec_wait_s", "exec_s", "train_s", "step_s",
                "tokens_per_s")
GRPO_PROMPTS, GRPO_GROUP = 4, 4


def grpo_init(mesh):
  """-> (tokenizer, model config, optimizer, initial TrainState, its shardings) of the GRPO job."""
  import dataclasses
  from restrl_jax import memory_plan
  from restrl_jax.tokenizer import embedded_tokenizer
  from restrl_jax.training import make_optimizer
  from restrl_jax.warmstart import policy_config

  tok = embedded_tokenizer()
  config = dataclasses.replace(policy_config(tok), num_layers=2)
  optimizer = make_optimizer(1e-2, total_steps=10, schedule="constant", eps=1e-4)
  abstract, shardings = memory_plan.abstract_train_state(config, mesh, optimizer)
  return tok, config, optimizer, _host_init(abstract, shardings, seed=1), shardings


def _grpo_job(mesh, per_host: bool = True) -> Job:
  """GRPO on the tiny policy (random weights) with the real sandbox: each prompt's state is a
  correct program followed by "#", so a completion scores 1 while it stays inside the comment
  (or closes the code block) and 0 once it breaks the program - rewards vary within groups."""
  import dataclasses
  import jax
  from restrl_jax.data.synthetic import load_synthetic
  from restrl_jax.execution.jobs import Limits
  from restrl_jax.execution.pool import ExecutionPool
  from restrl_jax.rl.trainer import GRPOConfig, GRPOTrainer, Request
  from restrl_jax.sampling import Sampler
  from restrl_jax.sampling.row_feed import HostRowFeed

  tok, config, optimizer, state, shardings = grpo_init(mesh)
  # beta_kl=0: no reference policy, one compile less (its log-probs are global arrays anyway);
  # stop_at_fence: the sampler's host-side stop check runs on each host's own rows; each host
  # samples its 2 prompts in 2 chunks (executing one while sampling the next), and the update
  # accumulates 2 micro-batches
  cfg = GRPOConfig(group_size=GRPO_GROUP, prompts_per_step=GRPO_PROMPTS, max_new_tokens=12,
                   max_prompt_tokens=256, temperature=1.0, stop_at_fence=True,
                   overlap_chunks=2, grad_accum_steps=2, beta_kl=0.0)
  pool = CountingPool(ExecutionPool(num_workers=1, limits=Limits(program_timeout_s=60)))
  problems = [dataclasses.replace(p, starter_code=p.solutions[0] + "#")
              for p in load_synthetic("train", 2 * GRPO_PROMPTS, verify=False)]
  requests = [Request(p, p.starter_code) for p in problems]
  if per_host:
    sampler = Sampler(config, None, tok, mesh=mesh, feed=HostRowFeed(mesh))
    step = GRPOTrainer(config, tok, cfg, optimizer, pool, mesh, shardings, sampler=sampler).step
  else:
    step = GRPOTrainer(config, tok, cfg, optimizer, pool, mesh, shardings).step
  key = jax.random.key(7)

  def run_step(state, i: int):
    take = lambda n: [requests[(i * n + j) % len(requests)] for j in range(n)]
    state, metrics, ro = step(state, None, take, jax.random.fold_in(key, i))
    out = {k: float(v) for k, v in metrics.items() if k not in GRPO_TIMINGS}
    out["exec_rewards"] = [float(r) for r in ro.exec_reward]
    out["host_programs"] = pool.take_count()     # run in this process's own sandbox pool
    return state, out

  return Job(state, run_step, pool.close)


class CountingPool:
  """An ExecutionPool that counts the programs submitted to it."""

  def __init__(self, pool):
    self.pool, self.count = pool, 0

  def submit(self, programs, suites):
    self.count += len(programs)
    return self.pool.submit(programs, suites)

  def take_count(self) -> int:
    count, self.count = self.count, 0
    return count

  def close(self) -> None:
    self.pool.close()


def _host_init(abstract, shardings, seed: int):
  """Norm scales 1, other rank >= 2 weights N(0, 0.02), the rest (biases, optimizer) 0, drawn
  on the host in a fixed order and placed shard by shard with `make_array_from_callback`
  (identical on every process, and no compile)."""
  import jax
  import numpy as np
  rng = np.random.default_rng(seed)

  def value(path, x):
    name = jax.tree_util.keystr(path)
    if ".params" in name and "scale" in name:
      return np.ones(x.shape, x.dtype)
    if ".params" in name and x.ndim >= 2:
      return (0.02 * rng.standard_normal(x.shape)).astype(x.dtype)
    return np.zeros(x.shape, x.dtype)

  host = jax.tree_util.tree_map_with_path(value, abstract)
  return jax.tree.map(lambda h, s: jax.make_array_from_callback(h.shape, s, lambda i: h[i]),
                      host, shardings)


REST_PROBLEMS = 4


def rest_configs(steps: int):
  """(RoundsConfig, GRPOConfig) of the rest job: the GRPO job's settings, Adam eps 1e-4 as in
  the GRPO job, and collection in chunks of 6 rows (16 rows: 6, 6, 4): across hosts each chunk
  is padded to the 8 batch shards, the size of the GRPO sampling chunks (one compiled sampling
  program serves both), so process 1 samples padding rows and, in the last chunk, only those."""
  from restrl_jax.rl.rounds import RoundsConfig
  from restrl_jax.rl.trainer import GRPOConfig
  cfg = RoundsConfig(method="rest_grpo", rounds=1, num_samples=GRPO_GROUP, collect_batch=6,
                     max_new_tokens=12, temperature=1.0, sigma0=0.05, r0=0.9, alpha=0.95,
                     beta=0.5, epochs=4.0, max_steps_per_round=steps, learning_rate=1e-2,
                     schedule="constant", adam_eps=1e-4, checkpoint_every=steps,
                     tensorboard=False)
  grpo = GRPOConfig(group_size=GRPO_GROUP, prompts_per_step=GRPO_PROMPTS, max_new_tokens=12,
                    max_prompt_tokens=256, temperature=1.0, stop_at_fence=True,
                    overlap_chunks=2, grad_accum_steps=2, beta_kl=0.0)
  return cfg, grpo


def _record_writes(log: list[str], root: str) -> None:
  """Log (relative to `root`) every file this process writes through io_utils or models.save_hf
  (what the rounds, the runner and the export use; orbax and MetricsWriter are not counted)."""
  from restrl_jax import io_utils, models

  def wrap(module, name: str, arg: int) -> None:
    original = getattr(module, name)

    def logged(*args, **kwargs):
      log.append(os.path.relpath(str(args[arg]), root))
      return original(*args, **kwargs)
    setattr(module, name, logged)
  wrap(io_utils, "atomic_write_text", 0)
  wrap(io_utils, "append_jsonl", 0)
  wrap(io_utils, "commit_atomic_dir", 0)
  wrap(models, "save_hf", 2)


def run_rest(steps: int, out: str, policy: str):
  """One rest_grpo round through the pipeline runner -> (exported params, per-step metrics)."""
  import dataclasses
  import json
  import jax
  import ml_collections
  import numpy as np
  from restrl_jax import models, parallel
  from restrl_jax.data.synthetic import load_synthetic
  from restrl_jax.execution.jobs import Limits
  from restrl_jax.execution.pool import ExecutionPool
  from restrl_jax.pipeline import runner
  from restrl_jax.pipeline import register_stage
  from restrl_jax.rl.rounds import Setup, run_rounds
  from restrl_jax.tokenizer import load_tokenizer

  workdir = os.path.join(out, "work")
  writes: list[str] = []
  _record_writes(writes, workdir)
  cfg, grpo = rest_configs(steps)
  problems = tuple(dataclasses.replace(p, starter_code=p.solutions[0] + "#")
                   for p in load_synthetic("train", REST_PROBLEMS, verify=False))
  pool = CountingPool(ExecutionPool(num_workers=1, limits=Limits(program_timeout_s=60)))
  history: list[dict] = []

  def on_step(round_index: int, step: int, metrics: dict) -> None:
    out = {k: float(v) for k, v in metrics.items() if k not in GRPO_TIMINGS}
    out["host_programs"] = pool.take_count()     # run in this process's own sandbox pool
    history.append(out)
    _log(f"rest: step {step}")

  @register_stage("rest_hosts", reads=())
  def stage(ctx):
    setup = Setup(problems=problems, tokenizer=load_tokenizer(policy), pool=pool, cfg=cfg,
                  grpo=grpo, mesh=parallel.make_mesh((1, -1, 1)))
    result = run_rounds(setup, policy, ctx.stage_dir, on_step)
    return {k: result[k] for k in ("method", "rounds", "steps")}

  try:
    runner.run_pipeline(ml_collections.ConfigDict({"stages": ["rest_hosts"],
                                                   "workdir": workdir}))
  finally:
    pool.close()
  _, params = models.load_hf(os.path.join(workdir, "rest_hosts", "policy"))
  with open(os.path.join(out, f"rest_writes.{jax.process_index()}.json"), "w") as f:
    json.dump(sorted(set(writes)), f)
  return jax.tree.map(np.asarray, jax.device_get(params)), history


SEARCH_STAGES = ("collect_values", "train_value", "decode")
SEARCH_PROBLEMS, SEARCH_TREES = 4, 2
SEARCH_METHODS = ("best_of_n", "vm_mcts")


def search_config(workdir: str):
  """configs/demo.py with its quick settings, cut to the search stages at a tiny size: the shipped
  demo policy, 4 problems searched 2 trees at a time (two processes: one batch each per round),
  3 samples per expansion, 48 new tokens, one sandbox worker per process, two of the decoding
  methods (best-of-N and VM-MCTS: both score with the value model); the value model trained on
  the mesh (one evaluation) in every run; the policy and the value model held on each process's
  host mesh of 4 devices (`mesh.host_shape`, tensor-parallel as on a v5e host)."""
  import importlib.util
  from restrl_jax import setup_runtime
  from restrl_jax.warmstart.shipped import shipped_policy_path
  spec = importlib.util.spec_from_file_location(
      "demo_config", os.path.join(REPO, "configs", "demo.py"))
  demo = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(demo)
  c = demo.get_config()
  c.quick = True
  setup_runtime.apply_quick(c)
  c.workdir, c.stages = workdir, SEARCH_STAGES
  c.model.hf_path = str(shipped_policy_path())
  c.sampling.max_new_tokens = 48
  c.execution.num_workers = 1
  c.mesh.host_shape = (1, 1, 4)
  c.mcts.update(dict(batch_trees=SEARCH_TREES, collect_num_problems=SEARCH_PROBLEMS,
                     decode_num_problems=SEARCH_PROBLEMS, collect_samples=3, decode_samples=3,
                     decode_methods=SEARCH_METHODS))
  c.value.update(dict(shard=True, min_eval=8, evals=1))
  return c


def run_search(out: str) -> dict[str, int]:
  """collect_values -> train_value -> decode through the pipeline runner (`search_config`).
  Writes DIR/search_writes.<pid>.json (the files this process wrote itself) and returns the
  number of programs each sandbox pool of this process ran."""
  import json
  import jax
  from restrl_jax.execution import ExecutionPool
  from restrl_jax.pipeline import runner

  from restrl_jax.pipeline.stages.common import benchmark_problems

  workdir = os.path.join(out, "work_search")
  config = search_config(workdir)
  # load the problems first: a process that finds them missing from the shared cache verifies
  # their references in a sandbox pool, which the count below is not about
  for which in ("collect", "decode"):
    benchmark_problems(*(config.mcts[f"{which}_{k}"]
                         for k in ("benchmark", "data_path", "split", "num_problems")))
  writes: list[str] = []
  _record_writes(writes, workdir)
  ran = {"programs": 0}
  submit = ExecutionPool.submit

  def counted(self, programs, suites):
    ran["programs"] += len(programs)
    return submit(self, programs, suites)
  ExecutionPool.submit = counted
  try:
    runner.run_pipeline(config)
  finally:
    ExecutionPool.submit = submit
  with open(os.path.join(out, f"search_writes.{jax.process_index()}.json"), "w") as f:
    json.dump(sorted(set(writes)), f)
  return ran


JOBS: dict[str, Callable[[Any], Job]] = {
    "sft": _sft_job, "grpo": _grpo_job,
    "grpo_plain": lambda mesh: _grpo_job(mesh, per_host=False)}


def run_job(name: str, steps: int, checkpoint_dir: str | None = None):
  """-> (gathered final params as numpy, per-step metrics); same on every process."""
  import jax
  from restrl_jax import distributed, parallel

  start = time.perf_counter()
  job = JOBS[name](parallel.make_mesh((1, -1, 1)))
  _log(f"{name}: set up in {time.perf_counter() - start:.1f} s")
  state, history = job.state, []
  try:
    for i in range(steps):
      start = time.perf_counter()
      state, metrics = job.run_step(state, i)
      history.append(metrics)
      _log(f"{name}: step {i} in {time.perf_counter() - start:.1f} s")
  finally:
    job.close()
  if checkpoint_dir is not None:
    from restrl_jax.checkpoint import Checkpointer
    with Checkpointer(checkpoint_dir) as ckpt:
      ckpt.save(steps, state, {"job": name, "processes": jax.process_count()})
  return distributed.gather(state.params), history


def _log(message: str) -> None:
  print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def flat_params(params) -> dict:
  import jax
  return {"/".join(str(getattr(k, "key", k)) for k in path): v
          for path, v in jax.tree_util.tree_flatten_with_path(params)[0]}


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--process-id", type=int, required=True)
  ap.add_argument("--num-processes", type=int, required=True)
  ap.add_argument("--port", type=int, required=True)
  ap.add_argument("--out", required=True)
  ap.add_argument("--jobs", default="sft", help=f"comma-separated, of {sorted(JOBS)}")
  ap.add_argument("--steps", type=int, default=3)
  ap.add_argument("--policy", help="HF policy folder the rest job starts from")
  args = ap.parse_args()
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import json
  import jax
  import numpy as np
  from restrl_jax import distributed

  if args.num_processes > 1:      # one process: the reference run
    distributed.initialize({"enabled": True, "coordinator_address": f"localhost:{args.port}",
                            "num_processes": args.num_processes, "process_id": args.process_id})
  for job in args.jobs.split(","):
    if job == "search":
      with open(os.path.join(args.out, f"search.{args.process_id}.json"), "w") as f:
        json.dump(run_search(args.out), f)
      continue
    if job == "rest":
      params, history = run_rest(args.steps, args.out, args.policy)
    else:
      params, history = run_job(job, args.steps, os.path.join(args.out, f"ckpt_{job}"))
    if distributed.is_writer():
      np.savez(os.path.join(args.out, f"{job}.npz"), **flat_params(params))
    with open(os.path.join(args.out, f"{job}.{args.process_id}.json"), "w") as f:
      json.dump(history, f)
  with open(os.path.join(args.out, f"done.{args.process_id}"), "w") as f:
    f.write(f"{jax.process_index()} {jax.process_count()} {jax.device_count()} "
            f"{jax.local_device_count()}\n")
  distributed.sync("worker_done")


if __name__ == "__main__":
  main()
