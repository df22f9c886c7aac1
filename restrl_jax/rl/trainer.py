"""One GRPO (or DPO) optimisation step from (problem, state) prompts: sample, score, update.

A GRPO step (docs/method.md §3.1, §4.3):

 1. take B requests (problem, state), render each prompt (`build_prompt`, left-truncated to
    `max_prompt_tokens`) and repeat it G times;
 2. sample B*G completions at temperature T with the rollout engine (`rollout.start_rollout`;
    row j of group i draws with row id i*G + j, so `overlap_chunks` does not change the
    samples). Default (the paper, TRL): NO stop strings, up to `max_new_tokens` or EOS, and the
    reward cuts the text itself. With `stop_at_fence=True` the sampler stops at the template's end
    marker instead; the shaping is then computed on `text + marker` (bonus = symbol reward, no
    trailing text) and the marker's tokens are not trained on;
 3. shape each completion (the engine's extraction `rewards.Shaping`: +1e-3 for closing the
    block, -1e-6 per trailing character) and submit `state + valid` to the sandbox pool; while it
    runs, the device computes reference (and, for μ > 1, old) log-probs;
 4. reward = bonus + execution reward; advantages per group (`advantages` registry); optional
    KL-in-reward penalty;
 5. `num_iterations` (μ) jitted updates on the packed [B*G, P+N] arrays: the prompt and the
    completions each padded to a length bucket (`Buckets`: powers of two, the completion's at most
    `max_new_tokens`), so a step computes about the tokens that exist and shapes repeat.
    Only completion tokens are scored, and a group's prompt is computed once for its G rows
    (`grpo_step`).

Timings in the metrics: `sample_s` (sampling and shaping), `ref_s` (the reference / old
log-prob pass, while the sandbox runs), `exec_wait_s` (then still waiting on the sandbox),
`train_s` (advantages and the update), `step_s`; `exec_s` is the sandbox's own span.

DAPO dynamic sampling (`dynamic_sampling=True`) samples candidate batches of B requests until B
groups with non-zero execution-reward std are found (or `dynamic_max_candidate_batches` ran
out); the missing groups are padding rows with an all-zero loss mask, so the step keeps one shape.

`DPOTrainer.step` does the ReST-DPO update on a batch of `DPOPair`s.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from restrl_jax import models, training
from restrl_jax.data.prompts import template_for
from restrl_jax.data.problem import Problem
from restrl_jax.rl import dynamic_sampling as ds
from restrl_jax.rl import grpo_step, kl, losses
from restrl_jax.rl.advantages import AdvantageConfig, compute_advantages, reward_metrics
from restrl_jax.rl.dpo import DPOPair
from restrl_jax.rl.rewards import Shaping
from restrl_jax.rollout import PendingRollout, Sample, encode_prompt, start_rollout
from restrl_jax.sampling import FINISH_REASONS, Buckets, Sampler, SamplingParams
from restrl_jax.sampling.row_feed import RowFeed
from restrl_jax.training.accumulate import make_accum_train_step

OLD_LOGPROBS = ("auto", "recompute", "sampler")


class Request(NamedTuple):
  problem: Problem
  state: str                 # the partial program the completion continues


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
  """GRPO optimisation (docs/method.md §3.1, §4.3); the fields are the keys of the config's
  `grpo` section (less the optimiser's, which the ReST rounds read) and the defaults its values
  (TRL 0.18.2's). The loss and the advantages see their parts as `loss` and `advantage_config`."""
  group_size: int = 8                    # G
  prompts_per_step: int = 2              # B (the step trains on B*G completions)
  max_prompt_tokens: int = 1024          # longer prompts are left-truncated (TRL)
  max_new_tokens: int = 1024             # also L of "seq-mean-token-sum-norm" (TRL's dr_grpo)
  temperature: float = 0.7
  top_p: float = 1.0
  top_k: int = 0
  stop_at_fence: bool = False            # False: the paper (no stop strings)
  beta_kl: float = 0.04
  kl_estimator: str = "k3"
  kl_in_loss: bool = True                # False: KL only logged, put in the reward
  kl_clamp: float | None = None
  kl_reward_reduce: str = "sum"          # KL-in-reward (kl_in_loss=False): sum | mean
  epsilon: float = 0.2                   # PPO clip ε (ε_low)
  epsilon_high: float | None = None      # clip-higher (DAPO: 0.28); None: = epsilon
  dual_clip_c: float | None = None       # None: no dual-clip
  num_iterations: int = 1                # μ updates per sampled batch
  old_logprobs: str = "auto"             # auto: none for μ = 1 (ratio ≡ 1), else recompute
  policy_loss: str = "ppo-clip"
  loss_aggregation: str = "token-mean"
  advantage: str = "grpo"                # the estimator (advantages.ADVANTAGE)
  advantage_scale: str = "group"         # "group" | "batch" | "none"
  advantage_ddof: int = 1
  advantage_eps: float = 1e-4
  symbol_reward: float = 1e-3
  trailing_penalty: float = 1e-6
  dynamic_sampling: bool = False         # DAPO (the rounds set it for method "dapo")
  dynamic_max_candidate_batches: int = 4
  dynamic_min_std: float = 0.0
  remat: bool = False
  grad_accum_steps: int = 1              # micro-batches per update (whole rows, exact loss)
  overlap_chunks: int = 1                # > 1: sample B*G rows in chunks, execute chunk k while
                                         # chunk k+1 is generated (1: one sampling call)

  def __post_init__(self):
    for name in ("group_size", "prompts_per_step", "max_prompt_tokens", "max_new_tokens",
                 "num_iterations", "dynamic_max_candidate_batches", "grad_accum_steps",
                 "overlap_chunks"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"GRPOConfig.{name} must be >= 1, got {getattr(self, name)}")
    if self.old_logprobs not in OLD_LOGPROBS:
      raise ValueError(f"GRPOConfig.old_logprobs={self.old_logprobs!r}; choose {OLD_LOGPROBS}")
    if self.temperature <= 0.0:
      raise ValueError(f"GRPOConfig.temperature={self.temperature} must be > 0 (log-probs of a "
                       "greedy policy are undefined)")

  @property
  def loss(self) -> losses.GRPOLossConfig:
    """The loss's settings; "seq-mean-token-sum-norm"'s L is `max_new_tokens`, so the completion
    bucket of a step does not change the loss (TRL's dr_grpo divides by max_completion_length)."""
    return losses.GRPOLossConfig(
        policy_loss=self.policy_loss, epsilon_low=self.epsilon, epsilon_high=self.epsilon_high,
        dual_clip_c=self.dual_clip_c, beta_kl=self.beta_kl, kl_estimator=self.kl_estimator,
        kl_clamp=self.kl_clamp, kl_in_loss=self.kl_in_loss,
        loss_aggregation=self.loss_aggregation, norm_length=self.max_new_tokens)

  @property
  def advantage_config(self) -> AdvantageConfig:
    return AdvantageConfig(estimator=self.advantage, scale=self.advantage_scale,
                           ddof=self.advantage_ddof, eps=self.advantage_eps)

  @property
  def old_logprob_source(self) -> str | None:
    if self.old_logprobs == "auto":
      return None if self.num_iterations == 1 else "recompute"
    return self.old_logprobs

  def sampling_params(self, stops: tuple[str, ...]) -> SamplingParams:
    return SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                          top_p=self.top_p, top_k=self.top_k,
                          stop_strings=stops if self.stop_at_fence else ())

  @property
  def shaping(self) -> Shaping:
    return Shaping(self.symbol_reward, self.trailing_penalty, self.stop_at_fence)


@dataclasses.dataclass(frozen=True)
class Rollouts:
  """B*G sampled, shaped and scored completions (host side); group i = rows iG..iG+G-1."""
  requests: tuple[Request, ...]          # [B]
  prompts: tuple[list[int], ...]         # [B*G]
  completions: tuple[list[int], ...]     # [B*G]
  logps: tuple[np.ndarray, ...]          # [B*G] sampler log π_T per completion token
  texts: tuple[str, ...]                 # [B*G]
  programs: tuple[str, ...]              # [B*G] state + valid (executed)
  bonus: np.ndarray                      # [B*G] shaping bonus
  closed: np.ndarray                     # [B*G] bool
  finish: np.ndarray                     # [B*G] int32 token_loop.EOS / LENGTH / STOP
  exec_reward: np.ndarray                # [B*G]

  @property
  def reward(self) -> np.ndarray:
    return self.bonus + self.exec_reward


FINISH_CODES = {reason: code for code, reason in FINISH_REASONS.items()}


def as_rollouts(requests: Sequence[Request], samples: Sequence[Sample],
                exec_reward: np.ndarray) -> Rollouts:
  """The engine's samples of `requests` (G rows each, `rewards.Shaping` extractions) and their
  execution rewards as `Rollouts`."""
  return Rollouts(
      requests=tuple(requests), prompts=tuple(s.prompt_tokens for s in samples),
      completions=tuple(s.tokens for s in samples), logps=tuple(s.logprobs for s in samples),
      texts=tuple(s.completion for s in samples), programs=tuple(s.program for s in samples),
      bonus=np.array([s.extracted.bonus for s in samples], np.float64),
      closed=np.array([s.extracted.closed for s in samples], bool),
      finish=np.array([FINISH_CODES[s.finish_reason] for s in samples], np.int32),
      exec_reward=np.asarray(exec_reward, np.float64))


def _mean_metrics(items: Sequence[dict]) -> dict[str, float]:
  host = jax.device_get(list(items))
  return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


class GRPOTrainer:
  """Sampling, scoring and jitted updates of one policy; see the module docstring."""

  def __init__(self, model_config: models.ModelConfig, tokenizer: Any, cfg: GRPOConfig,
               optimizer: optax.GradientTransformation, pool: Any,
               mesh: jax.sharding.Mesh | None = None, state_shardings: Any = None,
               sampler: Sampler | None = None):
    self.config, self.tokenizer, self.cfg, self.pool, self.mesh = (
        model_config, tokenizer, cfg, pool, mesh)
    self.pad_id = int(model_config.pad_token_id or 0)
    self.sampler = sampler or Sampler(model_config, None, tokenizer, mesh=mesh)
    self.feed = self.sampler.feed       # this host's rows <-> the mesh (sampling/row_feed.py)
    self.buckets = Buckets()
    self._check_batch()
    if not self.feed.rows_are_global:
      check_rows_per_host(cfg, mesh, self.feed)
    objective = functools.partial(grpo_step.grpo_objective, model_config, cfg.loss,
                                  cfg.temperature, cfg.remat,
                                  micro_batch_share(cfg.group_size, cfg.grad_accum_steps))
    self.train_step = make_accum_train_step(objective, optimizer, cfg.grad_accum_steps, mesh,
                                            state_shardings)
    self.logprob_fn = grpo_step.make_logprob_fn(model_config, cfg.temperature, cfg.group_size,
                                                mesh)

  def _check_batch(self) -> None:
    rows = self.cfg.prompts_per_step * self.cfg.group_size
    check_micro_batches(rows, self.cfg.grad_accum_steps, self.mesh,
                        "prompts_per_step * group_size", "completions per step")

  # -- 1-3: sample, shape, execute --------------------------------------------------------------

  def start_rollouts(self, params: Any, requests: Sequence[Request],
                     key: jax.Array) -> PendingRollout:
    """Sample and shape G completions per request (this process's requests) and submit their
    programs; the rollout engine with the GRPO shaping. With `overlap_chunks` = k > 1 the B*G
    rows are sampled in chunks of ceil(B*G / k) rows, each executing while the next is
    generated; every chunk is padded to the whole batch's prompt length and draws with the rows'
    global ids, so the samples are those of one call."""
    g, rows = self.cfg.group_size, len(requests) * self.cfg.group_size
    stops = tuple(sorted({s for r in requests for s in template_for(r.problem).stops}))
    return start_rollout(
        self.sampler, self.pool, [r.problem for r in requests], self.cfg.sampling_params(stops),
        g, states=[r.state for r in requests], extract=self.cfg.shaping, rng=key,
        chunk_size=-(-rows // self.cfg.overlap_chunks), params=params,
        request_ids=self.feed.row_ids(rows)[::g] // g,         # global group ids: row id i*G + j
        max_prompt_tokens=self.cfg.max_prompt_tokens, split_by_markers=False,
        pad_to_longest=True, feed=RowFeed())                   # the requests are this process's

  def rollouts(self, params: Any, requests: Sequence[Request], key: jax.Array) -> Rollouts:
    pending = self.start_rollouts(params, requests, key)
    return as_rollouts(requests, pending.samples, _exec_rewards(pending))

  # -- DAPO: candidate batches until B informative groups --------------------------------------

  def dynamic_rollouts(self, params: Any, next_requests: Callable[[int], list[Request]],
                       key: jax.Array) -> tuple[Rollouts, np.ndarray, dict]:
    b, g = self.cfg.prompts_per_step, self.cfg.group_size
    sel, candidates = ds.GroupSelection(b), []
    while not sel.full and sel.num_batches < self.cfg.dynamic_max_candidate_batches:
      ro = self.rollouts(params, next_requests(b), jax.random.fold_in(key, sel.num_batches))
      candidates.append(ro)
      sel = ds.add_candidates(sel, ro.exec_reward.reshape(b, g), self.cfg.dynamic_min_std)
    idx = ds.finalize(sel)
    picked = gather_groups(candidates, idx.batch, idx.row, g)
    return picked, ds.completion_mask(idx.valid, g), ds.selection_metrics(sel)

  # -- 3-5: batch and update ---------------------------------------------------------------

  def step(self, state: training.TrainState, ref_params: Any,
           next_requests: Callable[[int], list[Request]], key: jax.Array
           ) -> tuple[training.TrainState, dict, Rollouts]:
    """One GRPO step; `next_requests(n)` hands out the next n prompts of the data stream (the
    same on every process). This process samples, runs and scores the groups its feed holds
    (all of them with a `RowFeed`); the rollouts and metrics returned cover every process's rows.
    """
    g, asked = self.cfg.group_size, []

    def held(n: int) -> list[Request]:
      requests = list(next_requests(n))
      asked.append(requests)
      return [requests[i] for i in self.feed.groups(n * g, g)]

    state, metrics, ro = self._step_on_rows(state, ref_params, held, key)
    if self.feed.rows_are_global:                  # every row is here: nothing to gather
      return state, metrics, ro
    full = gather_rollouts(self.feed, asked[-1], ro, g)
    return state, whole_batch_metrics(self.feed, self.cfg, metrics, full), full

  def _step_on_rows(self, state: training.TrainState, ref_params: Any,
                    next_requests: Callable[[int], list[Request]], key: jax.Array
                    ) -> tuple[training.TrainState, dict, Rollouts]:
    """The step on the rows this process holds: sample, score, update."""
    t0 = time.perf_counter()
    if self.cfg.dynamic_sampling:
      ro, valid, extra = self.dynamic_rollouts(state.params, next_requests, key)
      t1 = time.perf_counter()
      packed = jax.block_until_ready(self._pack(ro, valid, state.params, ref_params))
      t2 = time.perf_counter()
    else:
      requests = next_requests(self.cfg.prompts_per_step)
      pending = self.start_rollouts(state.params, requests, key)
      valid, extra = np.ones(len(pending.samples), bool), {}
      ro = as_rollouts(requests, pending.samples, np.zeros(len(pending.samples)))
      t1 = time.perf_counter()
      packed = jax.block_until_ready(self._pack(ro, valid, state.params, ref_params))
      t2 = time.perf_counter()                                 # the sandbox ran meanwhile
      ro = dataclasses.replace(ro, exec_reward=_exec_rewards(pending))
    t3 = time.perf_counter()
    batch, host_metrics = self._finish_batch(packed, ro, valid)
    state, metrics = self._update(state, batch)
    t4 = time.perf_counter()
    tokens = int(sum(len(c) for c in ro.completions))
    if not self.cfg.dynamic_sampling:
      extra = dict(extra, exec_s=pending.execution.span_s)
    metrics.update(host_metrics, **extra, sample_s=t1 - t0, ref_s=t2 - t1, exec_wait_s=t3 - t2,
                   train_s=t4 - t3, step_s=t4 - t0, tokens_per_s=tokens / max(t4 - t0, 1e-9))
    return state, metrics, ro

  def _pack(self, ro: Rollouts, valid: np.ndarray, params: Any, ref_params: Any) -> dict:
    """Packed arrays plus the device-side log-probs that do not need the rewards (reference
    log-probs only when β_KL > 0)."""
    p, n = self.lengths(ro.prompts, ro.completions)
    source = self.cfg.old_logprob_source
    arrays = grpo_step.pack_sequences(ro.prompts, ro.completions, p, n, self.pad_id,
                                      ro.logps if source == "sampler" else None)
    arrays["loss_mask"] &= valid[:, None]
    batch = grpo_step.place_batch(arrays, self.mesh, self.feed)
    if source == "recompute" or self._kl_in_reward:
      batch["old_logp"] = self.logprob_fn(params, batch["tokens"], batch["attention_mask"], n)
    if self.cfg.loss.beta_kl > 0.0:
      if ref_params is None:
        raise ValueError("beta_kl > 0 needs reference params (ref_params is None)")
      batch["ref_logp"] = self.logprob_fn(ref_params, batch["tokens"], batch["attention_mask"],
                                          n)
    return batch

  def lengths(self, prompts: Sequence[Sequence[int]],
              completions: Sequence[Sequence[int]]) -> tuple[int, int]:
    """(P, N): the prompt and completion buckets of a batch, the same on every host."""
    p = self.buckets.prompt_len(self.feed.agree_max(max(map(len, prompts))))
    n = self.buckets.new_tokens(self.feed.agree_max(max(map(len, completions))))
    return p, min(n, self.cfg.max_new_tokens)

  @property
  def _kl_in_reward(self) -> bool:
    return not self.cfg.loss.kl_in_loss and self.cfg.loss.beta_kl > 0.0

  def _finish_batch(self, batch: dict, ro: Rollouts, valid: np.ndarray) -> tuple[dict, dict]:
    """Advantages from the rewards (minus the KL penalty when the KL is in the reward)."""
    rewards = jnp.asarray(ro.reward * valid, jnp.float32)                    # [B*G]
    if self._kl_in_reward:
      rewards = _kl_penalised(rewards, batch["old_logp"], batch["ref_logp"], batch["loss_mask"],
                              self.cfg.loss, self.cfg.kl_reward_reduce)
      if self.cfg.old_logprob_source is None:
        batch.pop("old_logp")
    adv = np.asarray(_advantages(rewards, self.cfg.group_size, self.cfg.advantage_config)) * valid
    batch["advantages"] = grpo_step.place_batch({"a": adv.astype(np.float32)}, self.mesh,
                                                self.feed)["a"]
    return batch, rollout_metrics(ro, valid, self.cfg.group_size, adv)

  def _update(self, state: training.TrainState, batch: dict) -> tuple[training.TrainState, dict]:
    history = []
    for _ in range(self.cfg.num_iterations):
      state, m = self.train_step(state, batch)
      history.append(m)
    return state, _mean_metrics(history)


_advantages = jax.jit(compute_advantages, static_argnums=(1, 2))        # one compile, no eager ops
_reward_metrics = jax.jit(reward_metrics, static_argnums=(2,))


@functools.partial(jax.jit, static_argnums=(4, 5))
def _kl_penalised(rewards: jax.Array, logp: jax.Array, ref_logp: jax.Array, loss_mask: jax.Array,
                  loss_cfg: losses.GRPOLossConfig, reduce: str) -> jax.Array:
  """Outcome rewards [B] minus β_KL · (Σ or mean of the per-token KL over the completion)."""
  per_token = kl.kl_estimate(logp, ref_logp, loss_cfg.kl_estimator, loss_cfg.kl_clamp)
  return kl.apply_kl_to_rewards(rewards, per_token, loss_mask.astype(jnp.float32),
                                loss_cfg.beta_kl, reduce)


def micro_batch_share(group_size: int, grad_accum_steps: int) -> int:
  """Consecutive rows of one prompt inside a micro-batch: micro-batches take rows strided by
  `grad_accum_steps` (training/accumulate.py), so a group of G rows leaves G / k consecutive
  rows in each when k divides G, and otherwise no two neighbours are known to share one."""
  return group_size // grad_accum_steps if group_size % grad_accum_steps == 0 else 1


def _exec_rewards(pending: PendingRollout) -> np.ndarray:
  return np.array([r.reward for r in pending.results()], np.float64)


def check_micro_batches(rows: int, accum: int, mesh: jax.sharding.Mesh | None, what: str,
                        unit: str) -> None:
  """Rows per step must split into `accum` micro-batches, each a multiple of the batch shards."""
  shards = 1 if mesh is None else int(mesh.shape["data"] * mesh.shape["fsdp"])
  if rows % (accum * shards):
    raise ValueError(f"{what} = {rows} {unit} must be a multiple of grad_accum_steps ({accum}) "
                     f"x the mesh's batch shards (data * fsdp = {shards})")


def gather_groups(candidates: Sequence[Rollouts], batch: np.ndarray, row: np.ndarray,
                  g: int) -> Rollouts:
  """The groups (candidate batch[i], group row[i]) as one Rollouts of len(batch) groups."""
  rows = [(int(b), int(r) * g + j) for b, r in zip(batch, row) for j in range(g)]
  pick = lambda name: tuple(getattr(candidates[b], name)[i] for b, i in rows)
  arr = lambda name: np.array([getattr(candidates[b], name)[i] for b, i in rows])
  return Rollouts(
      requests=tuple(candidates[int(b)].requests[int(r)] for b, r in zip(batch, row)),
      prompts=pick("prompts"), completions=pick("completions"), logps=pick("logps"),
      texts=pick("texts"), programs=pick("programs"), bonus=arr("bonus"), closed=arr("closed"),
      finish=arr("finish"), exec_reward=arr("exec_reward"))


def check_rows_per_host(cfg: GRPOConfig, mesh: jax.sharding.Mesh | None, feed: Any) -> None:
  """A step on per-host rows (`row_feed.HostRowFeed`): what it cannot do, refused by name, and
  every process holding whole groups of the step's rows."""
  if mesh is None:
    raise ValueError("per-host rows (HostRowFeed) need the trainer's mesh over every process")
  if cfg.dynamic_sampling:
    raise ValueError("GRPOConfig.dynamic_sampling (DAPO) is not supported across hosts: each "
                     "host would stop drawing candidate batches at a different time")
  if not cfg.loss.kl_in_loss and cfg.loss.beta_kl > 0.0:
    raise ValueError("GRPOConfig.kl_in_loss=False (KL in the reward) is not supported "
                     "across hosts; keep the KL in the loss")
  for p in range(feed.num_processes):
    feed.rows(cfg.prompts_per_step * cfg.group_size, cfg.group_size, process_index=p)


ROW_FIELDS = ("prompts", "completions", "logps", "texts", "programs", "bonus", "closed",
              "finish", "exec_reward")
ROW_ARRAYS = {"bonus": np.float64, "closed": bool, "finish": np.int32, "exec_reward": np.float64}
TIMINGS = ("sample_s", "ref_s", "exec_wait_s", "exec_s", "train_s", "step_s")


def gather_rollouts(feed: Any, requests: Sequence[Request], local: Rollouts,
                    group_size: int) -> Rollouts:
  """This process's rollouts of a step on `requests` (`group_size` rows each) -> every process's
  rollouts, rows in global order, on every process."""
  rows = feed.gather_rows(list(zip(*(getattr(local, f) for f in ROW_FIELDS))),
                          len(requests) * group_size)
  cols = dict(zip(ROW_FIELDS, zip(*rows)))
  return Rollouts(requests=tuple(requests),
                  **{f: np.asarray(cols[f], ROW_ARRAYS[f]) if f in ROW_ARRAYS else tuple(cols[f])
                     for f in ROW_FIELDS})


def whole_batch_metrics(feed: Any, cfg: GRPOConfig, metrics: dict, full: Rollouts) -> dict:
  """A step's metrics with rollout statistics over the whole batch and the slowest process's
  timings (the update's own metrics are global already)."""
  g = cfg.group_size
  adv = _advantages(jnp.asarray(full.reward, jnp.float32), g, cfg.advantage_config)
  out = dict(metrics, **rollout_metrics(full, np.ones(len(full.prompts), bool), g,
                                        np.asarray(adv)))
  names = [k for k in TIMINGS if k in metrics]
  slowest = feed.agree_max(np.asarray([metrics[k] for k in names], np.float64))
  out.update({k: float(v) for k, v in zip(names, slowest)})
  out["tokens_per_s"] = sum(len(c) for c in full.completions) / max(out.get("step_s", 0.0), 1e-9)
  return out


def rollout_metrics(ro: Rollouts, valid: np.ndarray, g: int, adv: np.ndarray) -> dict[str, float]:
  """Reward / group statistics over the valid groups (TRL names where TRL has one)."""
  keep = valid.reshape(-1, g)[:, 0]
  if not keep.any():
    return {"num_groups": 0.0}
  groups = lambda x: np.asarray(x, np.float64).reshape(-1, g)[keep].reshape(-1)
  base = jax.device_get(_reward_metrics(groups(ro.reward), groups(adv), g))
  exec_ = jax.device_get(_reward_metrics(groups(ro.exec_reward), groups(adv), g))
  lengths = groups([len(c) for c in ro.completions])
  out = {k: float(v) for k, v in base.items() if not k.startswith("advantage")}
  out.update(exec_reward_mean=float(exec_["reward_mean"]),
             exec_reward_std=float(exec_["reward_std"]),
             frac_exec_zero_std=float(exec_["frac_reward_zero_std"]),
             closed_frac=float(groups(ro.closed).mean()),
             completion_len_mean=float(lengths.mean()), num_groups=float(keep.sum()))
  return out


# -- ReST-DPO ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DPOConfig:
  """ReST-DPO updates (docs/method.md §4.4; TRL DPOTrainer's defaults): the config's
  `rest.dpo_<field>` keys, and `max_prompt_tokens`, `remat`, `grad_accum_steps` of `grpo`."""
  beta: float = 0.1
  label_smoothing: float = 0.0
  pairs_per_step: int = 2
  max_prompt_tokens: int = 1024
  max_completion_tokens: int = 1024
  remat: bool = False
  grad_accum_steps: int = 1              # micro-batches of whole pairs per update


class DPOTrainer:
  """ReST-DPO updates on (prompt, chosen, rejected) pairs; the reference is fixed per round."""

  def __init__(self, model_config: models.ModelConfig, tokenizer: Any, cfg: DPOConfig,
               optimizer: optax.GradientTransformation, problems: dict[str, Problem],
               mesh: jax.sharding.Mesh | None = None, state_shardings: Any = None):
    self.config, self.tokenizer, self.cfg, self.problems, self.mesh = (
        model_config, tokenizer, cfg, problems, mesh)
    self.pad_id = int(model_config.pad_token_id or 0)
    self.eos = model_config.eos_token_ids[:1]
    self.buckets = Buckets()
    objective = functools.partial(grpo_step.dpo_objective, model_config, cfg.beta,
                                  cfg.label_smoothing, cfg.remat)
    check_micro_batches(cfg.pairs_per_step, cfg.grad_accum_steps,
                        mesh if cfg.grad_accum_steps > 1 else None, "pairs_per_step", "pairs")
    self.train_step = make_accum_train_step(objective, optimizer, cfg.grad_accum_steps, mesh,
                                            state_shardings)
    self.seq_logp_fn = grpo_step.make_sequence_logp_fn(model_config, mesh)

  def pack(self, pairs: Sequence[DPOPair]) -> dict[str, np.ndarray]:
    """chosen_* / rejected_* arrays [B, P+N] for the pairs (completion = text + EOS)."""
    prompts = [encode_prompt(self.tokenizer, self.problems[p.problem_id], p.state,
                             self.cfg.max_prompt_tokens) for p in pairs]
    out, n = {}, self.cfg.max_completion_tokens
    sides = {side: [(list(self.tokenizer.encode(getattr(p, side))) + list(self.eos))[:n]
                    for p in pairs] for side in ("chosen", "rejected")}
    plen = self.buckets.prompt_len(max(map(len, prompts)))
    clen = min(self.buckets.new_tokens(max(len(c) for s in sides.values() for c in s)), n)
    for side, completions in sides.items():
      packed = grpo_step.pack_sequences(prompts, completions, plen, clen, self.pad_id)
      out.update({f"{side}_{k}": v for k, v in packed.items()})
    out["valid"] = np.ones(len(pairs), bool)
    return out

  def step(self, state: training.TrainState, ref_params: Any, pairs: Sequence[DPOPair]
           ) -> tuple[training.TrainState, dict]:
    t0 = time.perf_counter()
    batch = grpo_step.place_batch(self.pack(pairs), self.mesh)
    for side in ("chosen", "rejected"):
      batch[f"ref_{side}"] = self.seq_logp_fn(ref_params, batch[f"{side}_tokens"],
                                              batch[f"{side}_attention_mask"],
                                              batch[f"{side}_loss_mask"])
    state, metrics = self.train_step(state, batch)
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    tokens = float(np.sum(jax.device_get(batch["chosen_loss_mask"]))
                   + np.sum(jax.device_get(batch["rejected_loss_mask"])))
    dt = time.perf_counter() - t0
    return state, dict(metrics, step_s=dt, tokens_per_s=tokens / max(dt, 1e-9))
