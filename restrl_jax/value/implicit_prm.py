"""The implicit process reward model (docs/method.md §6): a copy of the policy trained with the
DPO loss on (correct, wrong) program pairs scores a program prefix s of problem q by

  r(q, s) = beta * sum_{t in s} [log pi_dpo(s_t | x_q, s_<t) - log pi_ref(s_t | x_q, s_<t)]

(the DPO policy's implicit reward, summed over the prefix's tokens: Rafailov et al. 2024,
"From r to Q*"; Yuan et al. 2024, "Free process rewards without process labels"), where x_q is
the policy's prompt and pi_ref the policy it was trained from. Scores are sigmoid(r) in (0, 1),
a monotone map, so rankings are those of r; the MCTS drivers take them as values.

  prm = ImplicitPRM(config, params, ref_params, tokenizer, beta=0.1)
  scores = prm.score_states(problems, states)      # [N] in (0, 1)

A state is the program so far (starter code included, as the rollout engine and MCTS hold it);
its tokens are the text after the starter code, encoded as the ReST-DPO trainer encodes a
completion (`rl.trainer.DPOTrainer.pack`), after the prompt of the problem with its starter code.
No end-of-text token is appended: a prefix and a finished program are scored alike.

Saved as a folder: `policy/` (the DPO-trained policy as an HF folder) and `value_model.json`
(kind "implicit_prm", the reference policy's folder as `backbone_path`, beta, the token
budgets).
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from restrl_jax import io_utils, models, parallel, policy_folder
from restrl_jax.data.problem import Problem
from restrl_jax.rl import grpo_step
from restrl_jax.rollout import encode_prompt
from restrl_jax.sampling.buckets import Buckets
from restrl_jax.value.model import META_FILE, bucket_rows

KIND, POLICY_DIR = "implicit_prm", "policy"

# (config, params, tokens [B, P+N], attention_mask [B, P+N], loss_mask [B, N]) -> [B] sum log pi
_sequence_logps = jax.jit(grpo_step.sequence_logps, static_argnums=0)


def implicit_reward(logp: np.ndarray, ref_logp: np.ndarray, beta: float) -> np.ndarray:
  """beta * (log pi_dpo - log pi_ref) of whole states.  # [N]"""
  return beta * (np.asarray(logp, np.float64) - np.asarray(ref_logp, np.float64))


def state_completion(problem: Problem, state: str) -> str:
  """The text of `state` the policy wrote: what follows the problem's starter code."""
  start = problem.starter_code or ""
  return state[len(start):] if state.startswith(start) else state


class ImplicitPRM:
  """Batched implicit-reward scoring of (problem, state) pairs; see the module docstring."""

  def __init__(self, config: models.ModelConfig, params: Any, ref_params: Any, tokenizer: Any,
               beta: float, batch_size: int = 16, max_prompt_tokens: int = 1024,
               max_length: int = 2048, mesh: jax.sharding.Mesh | None = None):
    if beta <= 0 or batch_size < 1 or not 0 < max_prompt_tokens < max_length:
      raise ValueError(f"ImplicitPRM: need beta > 0, batch_size >= 1 and 0 < max_prompt_tokens "
                       f"< max_length, got {beta}, {batch_size}, {max_prompt_tokens}, "
                       f"{max_length}")
    self.config, self.tokenizer, self.beta, self.mesh = config, tokenizer, float(beta), mesh
    self.batch_size, self.max_prompt_tokens = batch_size, max_prompt_tokens
    self.max_completion_tokens = max_length - max_prompt_tokens
    self.pad_id = int(config.pad_token_id or 0)
    self.buckets = Buckets()
    shardings = None if mesh is None else models.param_shardings(config, mesh)
    self.params, self.ref_params = ((params, ref_params) if mesh is None else
                                    (jax.device_put(params, shardings),
                                     jax.device_put(ref_params, shardings)))

  def _context(self):
    return parallel.sharding_context(self.mesh) if self.mesh is not None else (
        contextlib.nullcontext())

  def _rows_multiple(self) -> int:
    return 1 if self.mesh is None else int(self.mesh.shape["data"] * self.mesh.shape["fsdp"])

  def encode(self, problems: Sequence[Problem], states: Sequence[str]
             ) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt ids, state ids) per pair; a state longer than the budget keeps its start."""
    by_id = {p.id: encode_prompt(self.tokenizer, p, p.starter_code, self.max_prompt_tokens)
             for p in {p.id: p for p in problems}.values()}     # once per problem, not per state
    prompts = [by_id[p.id] for p in problems]
    completions = [list(self.tokenizer.encode(state_completion(p, s)))[:self.max_completion_tokens]
                   for p, s in zip(problems, states)]
    return prompts, completions

  def sequence_logps(self, params: Any, problems: Sequence[Problem], states: Sequence[str]
                     ) -> np.ndarray:
    """sum log pi(state tokens | prompt) under `params` (placed like `self.params`).  # [N]"""
    if len(problems) != len(states):
      raise ValueError(f"ImplicitPRM: {len(problems)} problems but {len(states)} states")
    prompts, completions = self.encode(problems, states)
    out = np.zeros(len(states))
    order = np.argsort([len(p) + len(c) for p, c in zip(prompts, completions)], kind="stable")
    for start in range(0, len(order), self.batch_size):
      rows = order[start:start + self.batch_size]
      size = bucket_rows(len(rows), self.batch_size, self._rows_multiple())
      fill = list(rows) + [rows[0]] * (size - len(rows))             # fixed batch shapes
      plen = self.buckets.prompt_len(max(len(prompts[i]) for i in fill))
      clen = self.buckets.new_tokens(max(1, max(len(completions[i]) for i in fill)))
      batch = grpo_step.place_batch(grpo_step.pack_sequences(
          [prompts[i] for i in fill], [completions[i] for i in fill], plen, clen, self.pad_id),
          self.mesh)
      with self._context():
        v = _sequence_logps(self.config, params, batch["tokens"], batch["attention_mask"],
                            batch["loss_mask"])
      out[rows] = np.asarray(jax.device_get(v), np.float64)[:len(rows)]
    return out

  def rewards(self, problems: Sequence[Problem], states: Sequence[str]) -> np.ndarray:
    """The implicit rewards r(q, s).  # [N] float64"""
    if not states:
      return np.zeros(0)
    return implicit_reward(self.sequence_logps(self.params, problems, states),
                           self.sequence_logps(self.ref_params, problems, states), self.beta)

  def score_states(self, problems: Sequence[Problem], states: Sequence[str]) -> np.ndarray:
    """sigmoid(r(q, s)): the MCTS drivers' `StateScorer`.  # [N] float32"""
    return (1.0 / (1.0 + np.exp(-self.rewards(problems, states)))).astype(np.float32)

  def scorer(self):
    return self.score_states


def save_implicit_prm(path: str | os.PathLike, config: models.ModelConfig, params: Any,
                      tokenizer: Any, reference_path: str | os.PathLike, beta: float,
                      max_prompt_tokens: int, max_length: int, extra: dict | None = None
                      ) -> Path:
  """`policy/` (HF folder) + `value_model.json` under `path`, replacing an old save whole."""
  path = Path(path).absolute()
  meta = {"kind": KIND, "backbone_path": str(Path(reference_path).absolute()),
          "beta": float(beta), "max_prompt_tokens": int(max_prompt_tokens),
          "max_length": int(max_length), **(extra or {})}
  tmp = io_utils.begin_atomic_dir(path)
  policy_folder.export_policy(config, params, tokenizer, tmp / POLICY_DIR)
  (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
  io_utils.commit_atomic_dir(path)
  return path


def load_implicit_prm(path: str | os.PathLike, meta: dict, dtype: str = "float32",
                      batch_size: int = 16, mesh: jax.sharding.Mesh | None = None,
                      tokenizer: Any = None) -> ImplicitPRM:
  """A saved implicit PRM (`meta`: its value_model.json), ready to score."""
  from restrl_jax.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel
  config, params = models.load_hf(Path(path) / POLICY_DIR, dtype=dtype)
  ref_config, ref_params = models.load_hf(meta["backbone_path"], dtype=dtype)
  if ref_config != config:
    raise ValueError(f"implicit PRM {str(path)!r}: its policy and its reference "
                     f"{meta['backbone_path']!r} have different architectures")
  return ImplicitPRM(config, params, ref_params, tokenizer or load_tokenizer(meta["backbone_path"]),
                     meta["beta"], batch_size, meta["max_prompt_tokens"], meta["max_length"],
                     mesh)
