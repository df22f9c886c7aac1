"""One process of the multi-process test (no tests here; `test_distributed.py` runs it).

    python tests/test_distributed_worker.py --process-id 0 --num-processes 2 --port 12345 \
        --out DIR [--job sft] [--steps 3]

Joins the cluster (coordinator on localhost), builds a mesh over every process's devices, feeds
its `local_slice` of each global batch, runs a few training steps, saves an orbax checkpoint
from every process, and (process 0 only) writes the gathered final params to DIR/params.npz.
The same `run_job` runs in one process with 8 devices as the reference.

A job is `JOBS[name](mesh) -> Job`: a GRPO step plugs in by adding an entry that returns its
state shardings, initial state and step function over the same kind of global batches.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, NamedTuple

GLOBAL_BATCH, SEQ_LEN, VOCAB = 16, 24, 128


class Job(NamedTuple):
  state: Any                                   # a TrainState on the mesh
  step: Callable[[Any, dict], tuple[Any, dict]]
  make_batch: Callable[[int], dict]            # step index -> global numpy batch (same on all)


def _sft_job(mesh) -> Job:
  import dataclasses
  import jax
  import jax.numpy as jnp
  import numpy as np
  from restrl_jax import memory_plan, models
  from restrl_jax.training import TrainState, make_optimizer, make_train_step, sft_loss

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

  return Job(state, step, make_batch)


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


JOBS: dict[str, Callable[[Any], Job]] = {"sft": _sft_job}


def run_job(name: str, steps: int, checkpoint_dir: str | None = None):
  """-> (gathered final params as numpy, per-step losses); same on every process."""
  import jax
  from restrl_jax import distributed, parallel

  mesh = parallel.make_mesh((1, -1, 1))
  job = JOBS[name](mesh)
  rows = parallel.batch_sharding(mesh, 2)
  state, losses = job.state, []
  for i in range(steps):
    local = {k: distributed.local_slice(v) for k, v in job.make_batch(i).items()}
    state, metrics = job.step(state, distributed.global_batch(local, rows))
    losses.append(float(distributed.replicated_value(metrics["loss"])))
  if checkpoint_dir is not None:
    from restrl_jax.checkpoint import Checkpointer
    with Checkpointer(checkpoint_dir) as ckpt:
      ckpt.save(steps, state, {"job": name, "processes": jax.process_count()})
  return distributed.gather(state.params), losses


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--process-id", type=int, required=True)
  ap.add_argument("--num-processes", type=int, required=True)
  ap.add_argument("--port", type=int, required=True)
  ap.add_argument("--out", required=True)
  ap.add_argument("--job", default="sft", choices=sorted(JOBS))
  ap.add_argument("--steps", type=int, default=3)
  args = ap.parse_args()
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import jax
  import numpy as np
  from restrl_jax import distributed

  distributed.initialize({"enabled": True, "coordinator_address": f"localhost:{args.port}",
                          "num_processes": args.num_processes, "process_id": args.process_id})
  params, losses = run_job(args.job, args.steps, os.path.join(args.out, "ckpt"))
  if distributed.is_writer():
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): v
            for path, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    np.savez(os.path.join(args.out, "params.npz"), losses=np.asarray(losses), **flat)
  with open(os.path.join(args.out, f"done.{args.process_id}"), "w") as f:
    f.write(f"{jax.process_index()} {jax.process_count()} {jax.device_count()} "
            f"{jax.local_device_count()}\n")
  distributed.sync("worker_done")


if __name__ == "__main__":
  main()
