"""The device side of GRPO and DPO: packed token arrays, per-token log-probs, jitted objectives.

A GRPO batch is B*G sequences `prompt (left-padded to P) + completion (right-padded to N)`:

  tokens          [B*G, P+N] int32
  attention_mask  [B*G, P+N] bool   real prompt and completion tokens
  loss_mask       [B*G, P+N] bool   completion tokens only (prompt and padding masked)
  advantages      [B*G]      float32
  old_logp        [B*G, P+N-1]      optional: log π_old of each target (μ > 1, or sampler logps)
  ref_logp        [B*G, P+N-1]      optional: log π_ref (omitted when β_KL == 0)

Log-probs are of targets tokens[:, 1:] (position t predicts token t+1), so every per-token array
of the loss is [B, T-1] and the loss mask is `loss_mask[:, 1:]`. Logits are divided by the
sampling temperature, as in the sampler (and TRL), so the ratio compares like with like.

A DPO batch holds chosen and rejected sequences in the same layout (`chosen_*`, `rejected_*`)
plus the reference's summed log-probs `ref_chosen`, `ref_rejected` [B] and `valid` [B].

Everything here is pure; `make_train_step` (training/step.py) jits the objectives.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from restrl_jax import models, parallel
from restrl_jax.rl import dpo, losses


# -- packing (host numpy) ------------------------------------------------------------------------

def pack_sequences(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
                   prompt_len: int, completion_len: int, pad_id: int,
                   completion_logps: Sequence[np.ndarray] | None = None) -> dict[str, np.ndarray]:
  """Left-pad prompts to `prompt_len`, right-pad completions to `completion_len`.

  Returns tokens / attention_mask / loss_mask [B, P+N] and, with `completion_logps` (one array per
  completion, e.g. the sampler's), `old_logp` [B, P+N-1] aligned with the targets.
  """
  if len(prompts) != len(completions):
    raise ValueError(f"pack_sequences: {len(prompts)} prompts but {len(completions)} completions")
  b, t = len(prompts), prompt_len + completion_len
  tokens = np.full((b, t), pad_id, np.int32)                      # [B, P+N]
  attn = np.zeros((b, t), bool)                                   # [B, P+N]
  loss = np.zeros((b, t), bool)                                   # [B, P+N]
  old = np.zeros((b, t - 1), np.float32)                          # [B, P+N-1]
  for i, (p, c) in enumerate(zip(prompts, completions)):
    if not 0 < len(p) <= prompt_len:
      raise ValueError(f"prompt {i} has {len(p)} tokens; need 1..prompt_len={prompt_len}")
    if len(c) > completion_len:
      raise ValueError(f"completion {i} has {len(c)} tokens > completion_len={completion_len}")
    start = prompt_len - len(p)
    tokens[i, start:prompt_len] = p
    tokens[i, prompt_len:prompt_len + len(c)] = c
    attn[i, start:prompt_len + len(c)] = True
    loss[i, prompt_len:prompt_len + len(c)] = True
    if completion_logps is not None:
      old[i, prompt_len - 1:prompt_len - 1 + len(c)] = np.asarray(completion_logps[i])[:len(c)]
  out = {"tokens": tokens, "attention_mask": attn, "loss_mask": loss}
  if completion_logps is not None:
    out["old_logp"] = old
  return out


# -- log-probs ------------------------------------------------------------------------------------

def logprobs_and_entropy(config: models.ModelConfig, params: Any, tokens: jax.Array,
                         attention_mask: jax.Array, temperature: float = 1.0,
                         remat: bool = False) -> tuple[jax.Array, jax.Array]:
  """log π_T of tokens[:, 1:] and the entropy of π_T at each position: both [B, T-1] float32.

  Same arithmetic as `training.token_logprobs` (one forward pass gives both).
  """
  logits = models.logits(config, params, tokens, attention_mask, remat=remat)[:, :-1]  # [B,T-1,V]
  logits = logits / temperature
  logz = jax.nn.logsumexp(logits, axis=-1)                                      # [B, T-1]
  picked = jnp.take_along_axis(logits, tokens[:, 1:, None], axis=-1)[..., 0]     # [B, T-1]
  log_probs = logits - logz[..., None]
  entropy = -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)                   # [B, T-1]
  return picked - logz, entropy


def target_mask(loss_mask: jax.Array) -> jax.Array:
  """[B, T] completion mask -> [B, T-1] mask of the targets that are completion tokens."""
  return loss_mask[:, 1:].astype(jnp.float32)


# -- objectives (pure; `params` first so jax.value_and_grad differentiates it) -------------------

def grpo_objective(config: models.ModelConfig, loss_cfg: losses.GRPOLossConfig,
                   temperature: float, remat: bool, params: Any,
                   batch: dict) -> tuple[jax.Array, dict]:
  """GRPO loss and metrics on a packed batch (see the module docstring)."""
  logp, entropy = logprobs_and_entropy(config, params, batch["tokens"], batch["attention_mask"],
                                       temperature, remat)
  loss, metrics = losses.grpo_loss(logp, batch.get("old_logp"), batch.get("ref_logp"),
                                   batch["advantages"], target_mask(batch["loss_mask"]),
                                   loss_cfg, entropy=entropy)
  return loss, metrics


def sequence_logps(config: models.ModelConfig, params: Any, tokens: jax.Array,
                   attention_mask: jax.Array, loss_mask: jax.Array,
                   remat: bool = False) -> jax.Array:
  """Σ log π(completion tokens) at temperature 1: [B]."""
  logp, _ = logprobs_and_entropy(config, params, tokens, attention_mask, 1.0, remat)
  return dpo.sequence_logps(logp, target_mask(loss_mask))


def dpo_objective(config: models.ModelConfig, beta: float, label_smoothing: float, remat: bool,
                  params: Any, batch: dict) -> tuple[jax.Array, dict]:
  """Sigmoid DPO loss on a packed chosen/rejected batch."""
  chosen = sequence_logps(config, params, batch["chosen_tokens"],
                          batch["chosen_attention_mask"], batch["chosen_loss_mask"], remat)
  rejected = sequence_logps(config, params, batch["rejected_tokens"],
                            batch["rejected_attention_mask"], batch["rejected_loss_mask"], remat)
  loss, metrics = dpo.dpo_loss(chosen, rejected, batch["ref_chosen"], batch["ref_rejected"],
                               beta, label_smoothing, batch["valid"])
  # the loss is a mean over the valid pairs: its denominator, for gradient accumulation
  return loss, dict(metrics, loss_denominator=batch["valid"].astype(jnp.float32).sum())


# -- jitted helpers (forward only) ---------------------------------------------------------------

def _in_mesh(fn, mesh: jax.sharding.Mesh | None):
  if mesh is None:
    return fn

  @functools.wraps(fn)
  def wrapped(*args):
    with parallel.sharding_context(mesh):
      return fn(*args)
  return wrapped


def make_logprob_fn(config: models.ModelConfig, temperature: float,
                    mesh: jax.sharding.Mesh | None = None):
  """jitted (params, tokens, attention_mask) -> log π_T of tokens[:, 1:], [B, T-1]."""
  def fn(params, tokens, attention_mask):
    return logprobs_and_entropy(config, params, tokens, attention_mask, temperature)[0]
  return jax.jit(_in_mesh(fn, mesh))


def make_sequence_logp_fn(config: models.ModelConfig, mesh: jax.sharding.Mesh | None = None):
  """jitted (params, tokens, attention_mask, loss_mask) -> Σ completion log π, [B]."""
  def fn(params, tokens, attention_mask, loss_mask):
    return sequence_logps(config, params, tokens, attention_mask, loss_mask)
  return jax.jit(_in_mesh(fn, mesh))


def place_batch(batch: dict, mesh: jax.sharding.Mesh | None, feed: Any = None) -> dict:
  """Batch arrays on the devices, the leading (batch) dim over ("data", "fsdp"); with a
  `distributed.RowFeed` `feed`, the arrays are this host's rows (`rl.host_shard`)."""
  if mesh is None:
    return {k: jnp.asarray(v) for k, v in batch.items()}
  if feed is not None:
    return {k: feed.put(v, mesh) for k, v in batch.items()}
  return {k: jax.device_put(v, parallel.batch_sharding(mesh, np.ndim(v))) for k, v in batch.items()}
