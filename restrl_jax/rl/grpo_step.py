"""The device side of GRPO and DPO: packed token arrays, per-token log-probs, jitted objectives.

A GRPO batch is R = B*G sequences `prompt (left-padded to P) + completion (right-padded to N)`:

  tokens          [R, P+N] int32
  attention_mask  [R, P+N] bool   real prompt and completion tokens
  loss_mask       [R, N]   bool   real completion tokens (the targets that are scored)
  advantages      [R]      float32
  old_logp        [R, N]          optional: log π_old of each completion token (μ > 1, or the
                                  sampler's log-probs)
  ref_logp        [R, N]          optional: log π_ref (omitted when β_KL == 0)

N is the completion bucket of the step (the longest completion rounded up, at most
`max_new_tokens`), so a batch of short completions costs what its tokens cost. Only completion
tokens are scored: the logits are computed at the N positions that predict them, and the G rows
of a group, which share one prompt, compute that prompt once (`share`,
`models.completion_states`). Logits are divided by the sampling temperature, as in the sampler
(and TRL), so the ratio compares like with like.

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
from restrl_jax.models import decoder
from restrl_jax.models.completion_states import completion_hidden_states
from restrl_jax.rl import dpo, losses
from restrl_jax.training.token_logprobs import target_logprobs


# -- packing (host numpy) ------------------------------------------------------------------------

def pack_sequences(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
                   prompt_len: int, completion_len: int, pad_id: int,
                   completion_logps: Sequence[np.ndarray] | None = None) -> dict[str, np.ndarray]:
  """Left-pad prompts to `prompt_len`, right-pad completions to `completion_len`.

  Returns tokens / attention_mask [B, P+N], loss_mask [B, N] and, with `completion_logps` (one
  array per completion, e.g. the sampler's), `old_logp` [B, N] aligned with the loss mask.
  """
  if len(prompts) != len(completions):
    raise ValueError(f"pack_sequences: {len(prompts)} prompts but {len(completions)} completions")
  b, t = len(prompts), prompt_len + completion_len
  tokens = np.full((b, t), pad_id, np.int32)                      # [B, P+N]
  attn = np.zeros((b, t), bool)                                   # [B, P+N]
  loss = np.zeros((b, completion_len), bool)                      # [B, N]
  old = np.zeros((b, completion_len), np.float32)                 # [B, N]
  for i, (p, c) in enumerate(zip(prompts, completions)):
    if not 0 < len(p) <= prompt_len:
      raise ValueError(f"prompt {i} has {len(p)} tokens; need 1..prompt_len={prompt_len}")
    if len(c) > completion_len:
      raise ValueError(f"completion {i} has {len(c)} tokens > completion_len={completion_len}")
    start = prompt_len - len(p)
    tokens[i, start:prompt_len] = p
    tokens[i, prompt_len:prompt_len + len(c)] = c
    attn[i, start:prompt_len + len(c)] = True
    loss[i, :len(c)] = True
    if completion_logps is not None:
      old[i, :len(c)] = np.asarray(completion_logps[i])[:len(c)]
  out = {"tokens": tokens, "attention_mask": attn, "loss_mask": loss}
  if completion_logps is not None:
    out["old_logp"] = old
  return out


# -- log-probs ------------------------------------------------------------------------------------

def completion_logprobs(config: models.ModelConfig, params: Any, tokens: jax.Array,
                        attention_mask: jax.Array, completion_len: int, share: int = 1,
                        temperature: float = 1.0, remat: bool = False
                        ) -> tuple[jax.Array, jax.Array]:
  """log π_T of the N = `completion_len` completion tokens (the last N columns of `tokens`) and
  the entropy of π_T where each is drawn: both [B, N] float32. `share` consecutive rows hold the
  same prompt (computed once; `models.completion_states`)."""
  h = completion_hidden_states(config, params, tokens, attention_mask, completion_len, share,
                               remat)                                            # [B, N, D]
  logits = decoder.unembed(config, params, h) / temperature               # [B, N, V]
  logz = jax.nn.logsumexp(logits, axis=-1)                                       # [B, N]
  targets = tokens[:, -completion_len:]                                          # [B, N]
  picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]      # [B, N]
  log_probs = logits - logz[..., None]
  entropy = -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)                   # [B, N]
  return picked - logz, entropy


def completion_len(batch: dict, prefix: str = "") -> int:
  """N of a packed batch (static: the loss mask's width)."""
  return batch[f"{prefix}loss_mask"].shape[1]


# -- objectives (pure; `params` first so jax.value_and_grad differentiates it) -------------------

def grpo_objective(config: models.ModelConfig, loss_cfg: losses.GRPOLossConfig,
                   temperature: float, remat: bool, share: int, params: Any,
                   batch: dict) -> tuple[jax.Array, dict]:
  """GRPO loss and metrics on a packed batch (see the module docstring); `share` consecutive
  rows hold one prompt (G, or fewer in a micro-batch)."""
  logp, entropy = completion_logprobs(config, params, batch["tokens"], batch["attention_mask"],
                                      completion_len(batch), share, temperature, remat)
  loss, metrics = losses.grpo_loss(logp, batch.get("old_logp"), batch.get("ref_logp"),
                                   batch["advantages"],
                                   batch["loss_mask"].astype(jnp.float32), loss_cfg,
                                   entropy=entropy)
  return loss, metrics


def sequence_logps(config: models.ModelConfig, params: Any, tokens: jax.Array,
                   attention_mask: jax.Array, loss_mask: jax.Array,
                   remat: bool = False) -> jax.Array:
  """Σ log π(completion tokens) at temperature 1: [B] (loss_mask [B, N])."""
  n = loss_mask.shape[1]
  h = completion_hidden_states(config, params, tokens, attention_mask, n, 1, remat)  # [B, N, D]
  logp = target_logprobs(config, params, h, tokens[:, -n:])                          # [B, N]
  return dpo.sequence_logps(logp, loss_mask.astype(jnp.float32))


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


def make_logprob_fn(config: models.ModelConfig, temperature: float, share: int = 1,
                    mesh: jax.sharding.Mesh | None = None):
  """jitted (params, tokens, attention_mask, completion_len) -> log π_T of the completion
  tokens, [B, N]; `completion_len` is static, `share` as in `completion_logprobs`."""
  def fn(params, tokens, attention_mask, n):
    return completion_logprobs(config, params, tokens, attention_mask, n, share, temperature)[0]
  return jax.jit(_in_mesh(fn, mesh), static_argnums=3)


def make_sequence_logp_fn(config: models.ModelConfig, mesh: jax.sharding.Mesh | None = None):
  """jitted (params, tokens, attention_mask, loss_mask) -> Σ completion log π, [B]."""
  def fn(params, tokens, attention_mask, loss_mask):
    return sequence_logps(config, params, tokens, attention_mask, loss_mask)
  return jax.jit(_in_mesh(fn, mesh))


def place_batch(batch: dict, mesh: jax.sharding.Mesh | None, feed: Any = None) -> dict:
  """Batch arrays on the devices, the leading (batch) dim over ("data", "fsdp"); with a
  `sampling.row_feed.RowFeed` `feed`, the arrays are this host's rows."""
  if mesh is None:
    return {k: jnp.asarray(v) for k, v in batch.items()}
  if feed is not None:
    return {k: feed.put(v, mesh) for k, v in batch.items()}
  return {k: jax.device_put(v, parallel.batch_sharding(mesh, np.ndim(v))) for k, v in batch.items()}
