"""The ReST outer loop (docs/method.md §4.1-4.4): per round collect -> assemble -> train -> save.

Round r (folder `<out_dir>/round_<r>`):

 1. collect: N samples per training problem from the round's start policy (T = 0.7, stop at the
    end marker), executed in the sandbox -> `samples.jsonl` (every record) and `collect.jsonl`
    (`ProblemSamples`, read back on resume instead of re-sampling);
 2. assemble: `rest_data.assemble` (method "rest_grpo": σ0 filter + partial states, cut at token
    ends of the policy's prompt; "grpo" and "dapo": every original prompt) or `dpo.dpo_pairs` ("rest_dpo"), shuffled with a seed ->
    `rows.jsonl`;
 3. train `ceil(epochs * rows / batch)` steps with a fresh optimizer (linear decay over the round),
    the reference policy = the round's start policy; metrics -> `metrics.jsonl` (+ TensorBoard),
    every step's completions and rewards -> `train_samples.jsonl`; orbax checkpoints (params,
    optimizer state, step, RNG key, data position, round) every `checkpoint_every` steps and at
    the end, keep-last-N, resumed automatically (the steps run through `training.loop`);
 4. save the policy as an HF folder `round_<r>/policy` (written to a temporary folder, renamed).

The next round starts from that folder; the last one is copied to `<out_dir>/policy`. A round
whose policy exists is skipped, so a killed run resumes where it stopped and (on CPU, fixed seed)
ends with bitwise the same parameters as an uninterrupted one.

Several processes (`jax.process_count() > 1`): the Sampler feeds rows through
`row_feed.for_processes` (a `HostRowFeed`), so collection and the GRPO steps each sample, run and
score this process's rows and gather the results to every process (`rollout`,
`GRPOTrainer.step`); only process 0 writes files (`distributed.write_json` ...); orbax
checkpoints are saved by every process.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np
import optax

from restrl_jax import distributed, io_utils, models, parallel, training
from restrl_jax.data.problem import Problem
from restrl_jax.data.prompts import state_token_ends
from restrl_jax.policy_folder import export_policy
from restrl_jax.rl import dpo, rest_data
from restrl_jax.rl.trainer import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer, Request
from restrl_jax.rollout import rollout, summarize_records
from restrl_jax.sampling import Sampler, SamplingParams
from restrl_jax.sampling import row_feed
from restrl_jax.training import loop

METHODS = ("rest_grpo", "grpo", "dapo", "rest_dpo")
POLICY_DIR = "policy"


@dataclasses.dataclass(frozen=True)
class RoundsConfig:
  """The ReST loop: the fields are the keys of the config's `rest` section that the loop reads
  (and its defaults the section's values), the optimiser's keys of `grpo` (`epochs` ...
  `grad_clip`), the policy's `dtype`, and `collect_batch` / `adam_eps`, which no section sets."""
  method: str = "rest_grpo"              # rest_grpo | grpo | dapo | rest_dpo
  rounds: int = 2
  # collection: N samples per training problem
  num_samples: int = 5
  temperature: float = 0.7
  top_p: float = 1.0
  top_k: int = 0
  max_new_tokens: int = 1024
  collect_batch: int | None = None       # rows per sampling call; None: the GRPO batch B*G
  # assembly (rest_data.RestDataConfig)
  sigma0: float = 0.05
  r0: float = 0.9
  alpha: float = 0.95
  beta: float | int = 0.5                # ratio, or a count (`rest_data.count_or_ratio`)
  mode: str = "sample"
  dedup: bool = False
  state_end: str = "token"
  shuffle_seed: int = 42
  seed: int = 0
  # training
  epochs: float = 1.0
  max_steps_per_round: int | None = None
  learning_rate: float = 1e-7            # GRPO's
  dpo_learning_rate: float = 2e-5        # ReST-DPO's
  schedule: str = "linear"
  warmup_steps: int = 0
  weight_decay: float = 0.0
  grad_clip: float = 1.0
  adam_eps: float = 1e-8
  checkpoint_every: int = 50
  keep_checkpoints: int = 2
  tensorboard: bool = True
  dtype: str = "float32"

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"rest.method={self.method!r}; choose from {METHODS}")
    for name in ("rounds", "num_samples", "checkpoint_every", "keep_checkpoints"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"rest.{name} must be >= 1, got {getattr(self, name)}")
    if self.epochs <= 0:
      raise ValueError(f"epochs (config.grpo.epochs) must be > 0, got {self.epochs}")
    _ = self.data   # RestDataConfig checks its settings now, before any round runs

  @property
  def collect(self) -> SamplingParams:
    """Collection's sampling (no stop strings; the seed is the rounds')."""
    return SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                          top_p=self.top_p, top_k=self.top_k, seed=self.seed)

  @property
  def data(self) -> rest_data.RestDataConfig:
    return rest_data.RestDataConfig(sigma0=self.sigma0, r0=self.r0, alpha=self.alpha,
                                    beta=rest_data.count_or_ratio(self.beta), mode=self.mode,
                                    dedup=self.dedup, state_end=self.state_end)

  @property
  def data_config(self) -> rest_data.RestDataConfig:
    """ReST-GRPO keeps `data.mode` ("sample" or "all"); the baselines use "basic" data."""
    if self.method == "rest_grpo":
      return self.data
    return dataclasses.replace(self.data, mode="basic")

  @property
  def train_learning_rate(self) -> float:
    """The peak learning rate of the round's updates: ReST-DPO's or GRPO's."""
    return self.dpo_learning_rate if self.method == "rest_dpo" else self.learning_rate


@dataclasses.dataclass(frozen=True)
class CurveEval:
  """Held-out scores of the policy under training, before its first step and every `every`
  steps (and after the last): the learning curve, `round_<r>/eval_curve.jsonl`. The same
  problems, samples and sampling seed at every point, so points differ by the policy alone."""
  problems: tuple[Problem, ...]
  every: int
  num_samples: int = 2
  sampling: SamplingParams = SamplingParams(max_new_tokens=128, temperature=0.7)
  seed: int = 0

  def __post_init__(self):
    if self.every < 1 or self.num_samples < 1 or not self.problems:
      raise ValueError(f"curve evaluation needs problems, every >= 1 and num_samples >= 1; got "
                       f"{len(self.problems)} problems, every={self.every}, "
                       f"num_samples={self.num_samples}")


@dataclasses.dataclass(frozen=True)
class Setup:
  """What every round shares."""
  problems: tuple[Problem, ...]
  tokenizer: Any
  pool: Any
  cfg: RoundsConfig
  grpo: GRPOConfig = GRPOConfig()
  dpo: DPOConfig = DPOConfig()
  mesh: jax.sharding.Mesh | None = None
  curve: CurveEval | None = None


# -- params --------------------------------------------------------------------------------------

def place_params(config: models.ModelConfig, host_params: Any, mesh) -> Any:
  """A fresh device copy of host (numpy) params, sharded on `mesh` by the logical axes of the
  decoder's flax modules (`models.param_shardings`; committed to the first device without a
  mesh: committed and uncommitted inputs compile separately)."""
  if mesh is None:
    return jax.device_put(host_params, jax.devices()[0])
  shardings = models.param_shardings(config, mesh)
  if jax.process_count() > 1:
    return distributed.place(host_params, shardings)
  return jax.device_put(host_params, shardings)


def export_from_all_processes(config: models.ModelConfig, params: Any, tokenizer: Any,
                              path: Path) -> Path:
  """`policy_folder.export_policy` of sharded params: every process gathers them, process 0
  writes, all wait for it."""
  host = distributed.gather(params)
  if distributed.is_writer():
    export_policy(config, host, tokenizer, path)
  distributed.sync(f"export {path}")
  return path


def has_policy(path: Path) -> bool:
  return (path / "config.json").is_file()


# -- 1. collect ----------------------------------------------------------------------------------

def _sample_row(record) -> dict:
  return {"problem_id": record.problem_id, "sample_index": record.sample_index,
          "completion": record.completion, "program": record.program, "reward": record.reward,
          "finish_reason": record.finish_reason, "num_tokens": len(record.tokens)}


def collect(setup: Setup, sampler: Sampler, params: Any, round_dir: Path,
            key: jax.Array) -> tuple[list[rest_data.ProblemSamples], dict]:
  """N executed samples per problem (read back from `collect.jsonl` when present)."""
  path = round_dir / "collect.jsonl"
  if path.is_file():
    rows = io_utils.read_jsonl(path)
    meta = json.loads((round_dir / "collect_summary.json").read_text())
    return [rest_data.ProblemSamples(r["problem_id"], r["init_state"], tuple(r["samples"]),
                                     tuple(r["rewards"])) for r in rows], meta
  chunk = setup.cfg.collect_batch or setup.grpo.prompts_per_step * setup.grpo.group_size
  records = rollout(sampler, setup.pool, setup.problems, setup.cfg.collect,
                    setup.cfg.num_samples, rng=key, chunk_size=chunk, params=params)
  by_problem: dict[str, list] = {}
  for r in records:
    by_problem.setdefault(r.problem_id, []).append(r)
  samples = [rest_data.ProblemSamples(
      p.id, p.starter_code, tuple(r.program[len(r.state):] for r in by_problem[p.id]),
      tuple(float(r.reward) for r in by_problem[p.id])) for p in setup.problems]
  summary = summarize_records(records, ks=(1,), std_threshold=setup.cfg.data.sigma0)
  distributed.write_jsonl(round_dir / "samples.jsonl", [_sample_row(r) for r in records])
  distributed.write_json(round_dir / "collect_summary.json", summary)
  distributed.write_jsonl(path, [dataclasses.asdict(s) for s in samples])
  return samples, summary


# -- 2. assemble ---------------------------------------------------------------------------------

def prompt_token_ends_of(problems: Sequence[Problem], tokenizer: Any) -> rest_data.TokenEndsOf:
  """(problem_id, state) -> the token ends of that state inside the problem's prompt."""
  by_id = {p.id: p for p in problems}
  return lambda problem_id, state: state_token_ends(by_id[problem_id], state, tokenizer)


def assemble(setup: Setup, samples: Sequence[rest_data.ProblemSamples], round_index: int,
             round_dir: Path) -> tuple[list, dict]:
  """Shuffled training rows (RestRow) or DPO pairs, written to rows.jsonl."""
  cfg = setup.cfg
  if cfg.method == "rest_dpo":
    rows: list = dpo.dpo_pairs(samples)
    facts = {"rows": len(rows), "pairs": len(rows)}
  else:
    rows = rest_data.assemble(samples, cfg.data_config,
                              rng=np.random.default_rng([cfg.seed, round_index]),
                              token_ends_of=prompt_token_ends_of(setup.problems, setup.tokenizer))
    facts = rest_data.summarize(rows)
  order = np.random.default_rng([cfg.shuffle_seed, round_index]).permutation(len(rows))
  rows = [rows[i] for i in order]
  distributed.write_jsonl(round_dir / "rows.jsonl", [dataclasses.asdict(r) for r in rows])
  return rows, facts


class DataStream:
  """Rows handed out in order, wrapping around; `position` counts rows handed out."""

  def __init__(self, rows: Sequence, position: int = 0):
    if not rows:
      raise ValueError("DataStream needs at least one row")
    self.rows, self.position = list(rows), int(position)

  def take(self, n: int) -> list:
    out = [self.rows[(self.position + i) % len(self.rows)] for i in range(n)]
    self.position += n
    return out


# -- 3. train ------------------------------------------------------------------------------------

def num_steps(cfg: RoundsConfig, num_rows: int, batch: int) -> int:
  steps = math.ceil(cfg.epochs * num_rows / batch) if num_rows else 0
  return steps if cfg.max_steps_per_round is None else min(steps, cfg.max_steps_per_round)


def _train_sample_rows(step: int, ro) -> list[dict]:
  g = len(ro.prompts) // len(ro.requests)
  return [{"step": step, "problem_id": ro.requests[i // g].problem.id, "group": i // g,
           "state": ro.requests[i // g].state, "completion": ro.texts[i],
           "reward": float(ro.reward[i]), "exec_reward": float(ro.exec_reward[i]),
           "bonus": float(ro.bonus[i]), "closed": bool(ro.closed[i])}
          for i in range(len(ro.prompts))]


CURVE_FILE = "eval_curve.jsonl"


def score_curve_point(runtime: "Runtime", params: Any, round_index: int, step: int,
                      round_dir: Path) -> dict:
  """One learning-curve point: the curve problems sampled from `params`, run and scored."""
  setup, curve = runtime.setup, runtime.setup.curve
  records = rollout(runtime.sampler, setup.pool, curve.problems, curve.sampling,
                    curve.num_samples, rng=curve.seed, params=params,
                    chunk_size=setup.cfg.collect_batch or runtime.collect_chunk)
  scores = summarize_records(records, ks=(1,))
  row = {"step": step, "round": round_index,
         **{k: scores[k] for k in ("strict_accuracy", "test_case_average", "num_problems",
                                   "num_samples")}}
  distributed.append_jsonl(round_dir / CURVE_FILE, [row])
  logging.info("round %d step %d: held-out strict %.3f, test-case average %.3f", round_index,
               step, row["strict_accuracy"], row["test_case_average"])
  return row


def round_optimizer(cfg: RoundsConfig) -> optax.GradientTransformation:
  """The rounds' optimizer (`training.make_optimizer`): AdamW (β 0.9/0.999, eps `cfg.adam_eps`)
  + global-norm clipping with the learning rate as optimizer state, so every round sets its own
  schedule through `training.optim.with_learning_rate` and all rounds share one compiled train
  step; low-precision (bf16) params get an fp32 master copy that the optimizer updates."""
  return training.make_optimizer(cfg.train_learning_rate, weight_decay=cfg.weight_decay,
                                 grad_clip=cfg.grad_clip, eps=cfg.adam_eps, param_dtype=cfg.dtype,
                                 inject_learning_rate=True)


def check_method_runs_here(method: str) -> None:
  """rest_dpo builds its batches on one host: refused with several processes."""
  if jax.process_count() > 1 and method == "rest_dpo":
    raise ValueError("rest.method='rest_dpo' is not supported with several processes (its "
                     "batches are built on one host); run it as one process")


def _key_leaf(key: jax.Array, mesh: jax.sharding.Mesh | None) -> jax.Array:
  """A PRNG key as a checkpoint leaf: its key data (replicated over the mesh across processes:
  orbax does not save a process-local array from several processes)."""
  data = jax.random.key_data(key)
  if jax.process_count() == 1:
    return data
  return distributed.place(np.asarray(data), parallel.replicated(mesh))


def _key_from_leaf(leaf: jax.Array) -> jax.Array:
  """The PRNG key of a (restored) `_key_leaf`, local to this process."""
  if jax.process_count() == 1:
    return jax.random.wrap_key_data(leaf)
  return jax.random.wrap_key_data(distributed.replicated_value(leaf))


class Runtime:
  """The compiled pieces every round shares: one Sampler and one train step (built on first
  use, from the first state's shardings)."""

  def __init__(self, setup: Setup, model_config: models.ModelConfig):
    self.setup, self.model_config = setup, model_config
    check_method_runs_here(setup.cfg.method)
    self.sampler = Sampler(model_config, None, setup.tokenizer, mesh=setup.mesh,
                           feed=row_feed.for_processes(setup.mesh))
    self.optimizer = round_optimizer(setup.cfg)
    self._step_fn: Callable | None = None

  @property
  def collect_chunk(self) -> int:
    return self.setup.grpo.prompts_per_step * self.setup.grpo.group_size

  @property
  def batch_size(self) -> int:
    s = self.setup
    return s.dpo.pairs_per_step if s.cfg.method == "rest_dpo" else s.grpo.prompts_per_step

  def step_fn(self, state: training.TrainState) -> Callable:
    """step(state, ref, stream, key) -> (state, metrics, Rollouts or None)."""
    if self._step_fn is None:
      shardings = training.state_shardings(state) if self.setup.mesh is not None else None
      self._step_fn = self._build(shardings)
    return self._step_fn

  def _build(self, shardings) -> Callable:
    s, by_id = self.setup, {p.id: p for p in self.setup.problems}
    if s.cfg.method == "rest_dpo":
      dpo_trainer = DPOTrainer(self.model_config, s.tokenizer, s.dpo, self.optimizer, by_id,
                               s.mesh, shardings)

      def dpo_step(state, ref, stream, key):
        state, metrics = dpo_trainer.step(state, ref, stream.take(s.dpo.pairs_per_step))
        return state, metrics, None
      return dpo_step
    gcfg = dataclasses.replace(s.grpo, dynamic_sampling=s.cfg.method == "dapo")
    trainer = GRPOTrainer(self.model_config, s.tokenizer, gcfg, self.optimizer, s.pool, s.mesh,
                          shardings, sampler=self.sampler)

    def grpo_step(state, ref, stream, key):
      requests = lambda n: [Request(by_id[r.problem_id], r.state) for r in stream.take(n)]
      return trainer.step(state, ref, requests, key)
    return grpo_step


def train_round(runtime: Runtime, host_params, rows: list, round_index: int, round_dir: Path,
                on_step: Callable | None = None) -> tuple:
  """Train one round through `training.loop` (resuming from its checkpoints); returns
  (params, facts). The loop's state is the checkpoint tree {"train": TrainState, "rng": key
  data}; the checkpoint's meta holds the data position the round's `DataStream` resumes from."""
  setup, cfg, model_config = runtime.setup, runtime.setup.cfg, runtime.model_config
  steps = num_steps(cfg, len(rows), runtime.batch_size)
  ref = place_params(model_config, host_params, setup.mesh)
  if steps == 0:
    return ref, {"steps": 0, "resumed_from": 0}
  schedule = training.optim.make_schedule(cfg.train_learning_rate, steps, cfg.warmup_steps,
                                          cfg.schedule)
  state = training.init_train_state(place_params(model_config, host_params, setup.mesh),
                                    runtime.optimizer, setup.mesh)
  if setup.mesh is None:   # the step counter as committed as the train step's outputs
    state = jax.device_put(state, jax.devices()[0])
  step_fn = runtime.step_fn(state)
  key = jax.random.fold_in(jax.random.key(cfg.seed), 1000 + round_index)
  plan = loop.LoopPlan(
      steps, round_dir / "checkpoints", round_dir,
      checkpoint_at=loop.every(cfg.checkpoint_every, steps),
      eval_at=loop.never if setup.curve is None else loop.every(setup.curve.every, steps),
      keep_checkpoints=cfg.keep_checkpoints, tensorboard=cfg.tensorboard,
      step_files=("train_samples.jsonl", CURVE_FILE))
  start = loop.resume(plan, {"train": state, "rng": _key_leaf(key, setup.mesh)})
  if start.step:
    logging.info("round %d: resuming from step %d", round_index, start.step)
  stream = DataStream(rows, start.meta.get("data_pos", 0))

  def round_step(tree: dict, step: int) -> tuple[dict, dict]:
    """The batch of a round's step is its index: the rows come from `stream` (DPO pairs, or
    GRPO requests drawn as dynamic sampling needs them)."""
    key, sub = jax.random.split(_key_from_leaf(tree["rng"]))
    lr = float(schedule(step))
    state, metrics, ro = step_fn(training.optim.with_learning_rate(tree["train"], lr), ref,
                                 stream, sub)
    if ro is not None:
      distributed.append_jsonl(round_dir / "train_samples.jsonl",
                               _train_sample_rows(step + 1, ro))
    metrics = dict(metrics, round=round_index, data_pos=stream.position, learning_rate=lr)
    return {"train": state, "rng": _key_leaf(key, setup.mesh)}, metrics

  def curve_point(done: int, tree: dict) -> None:   # rows go to CURVE_FILE, not metrics.jsonl
    score_curve_point(runtime, tree["train"].params, round_index, done, round_dir)

  def stepped(done: int, metrics: dict) -> None:
    if on_step is not None:
      on_step(round_index, done, metrics)

  tree = loop.run(plan, start, round_step, batches=lambda step: step,
                  row=lambda done, metrics: metrics, evaluate=curve_point,
                  meta=lambda done: {"round": round_index, "data_pos": stream.position,
                                     "steps": steps},
                  on_row=stepped)
  return tree["train"].params, {"steps": steps, "resumed_from": start.step}


# -- the loop ------------------------------------------------------------------------------------

def run_round(runtime: Runtime, policy: Path, round_index: int, out_dir: Path,
              on_step: Callable | None = None) -> dict:
  setup = runtime.setup
  round_dir = out_dir / f"round_{round_index}"
  round_dir.mkdir(parents=True, exist_ok=True)
  model_config, params = models.load_hf(policy, dtype=setup.cfg.dtype)
  host_params = jax.device_get(params)
  start = place_params(model_config, host_params, setup.mesh)
  key = jax.random.fold_in(jax.random.key(setup.cfg.seed), round_index)
  samples, collected = collect(setup, runtime.sampler, start, round_dir, key)
  del start
  rows, assembled = assemble(setup, samples, round_index, round_dir)
  params, trained = train_round(runtime, host_params, rows, round_index, round_dir, on_step)
  export_from_all_processes(model_config, params, setup.tokenizer, round_dir / POLICY_DIR)
  facts = {"round": round_index, "start_policy": str(policy),
           **{f"collect/{k}": v for k, v in collected.items()},
           **{f"data/{k}": v for k, v in assembled.items()}, **trained}
  distributed.write_json(round_dir / "round.json", facts)
  distributed.sync(f"round {round_index} done")
  return facts


def run_rounds(setup: Setup, start_policy: Path, out_dir: Path,
               on_step: Callable | None = None) -> dict:
  """All rounds from `start_policy`; the final policy ends up at `<out_dir>/policy`."""
  out_dir, policy = Path(out_dir), Path(start_policy)
  runtime = Runtime(setup, models.read_hf_config(policy, dtype=setup.cfg.dtype,
                                                 param_dtype=setup.cfg.dtype))
  per_round = []
  for r in range(setup.cfg.rounds):
    round_dir = out_dir / f"round_{r}"
    if has_policy(round_dir / POLICY_DIR) and (round_dir / "round.json").is_file():
      per_round.append(json.loads((round_dir / "round.json").read_text()))
    else:
      per_round.append(run_round(runtime, policy, r, out_dir, on_step))
    policy = round_dir / POLICY_DIR
  final = out_dir / POLICY_DIR
  if not has_policy(final) and distributed.is_writer():
    with io_utils.atomic_dir(final) as tmp:
      shutil.copytree(policy, tmp, dirs_exist_ok=True)
  distributed.write_text(out_dir / "rounds.jsonl",
                         "".join(json.dumps(f, default=str) + "\n" for f in per_round))
  distributed.sync("rounds done")
  return {"method": setup.cfg.method, "rounds": setup.cfg.rounds, "policy_path": str(final),
          "steps": sum(f.get("steps", 0) for f in per_round), "per_round": per_round}
