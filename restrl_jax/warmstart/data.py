"""Warm-start SFT data: reference solutions in the exact RL prompt format, as token batches.

One example = `build_prompt(problem, starter_code, tokenizer)` (learned from, not learned) followed
by the completion the RL policy is asked to write: the reference solution after the starter code,
the closing fence and EOS (learned). Prompt and completion are tokenized separately, as at
sampling time (the sampler continues from the prompt's own tokens).

Batches are stateless functions of the step: step s reads the examples at positions
[s*B, (s+1)*B) of an endless stream of per-epoch permutations drawn from (seed, epoch), so a
resumed run sees exactly the batches an uninterrupted one would. Each batch is right-padded to
its longest example rounded up to `pad_multiple` (few shapes, few compilations).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from restrl_jax.data.prompts import build_prompt, template_for
from restrl_jax.data.problem import Problem

CLOSING_FENCE = "\n```"


class Example(NamedTuple):
  prompt: np.ndarray        # [P] int32
  completion: np.ndarray    # [C] int32, ends with EOS


def reference_solution(problem: Problem) -> str:
  """The problem's whole reference program (synthetic: metadata["solution"]; else the first
  of `solutions`)."""
  solution = problem.metadata.get("solution") or next(iter(problem.solutions), None)
  if not solution:
    raise ValueError(f"problem {problem.id}: no reference solution (metadata 'solution' or "
                     "'solutions') to learn from")
  return solution


def completion_text(problem: Problem) -> str:
  """What the policy should write after the prompt: solution minus starter code + fence."""
  solution, starter = reference_solution(problem), problem.starter_code
  if not solution.startswith(starter):
    raise ValueError(f"problem {problem.id}: the reference solution does not start with the "
                     f"starter code {starter[:40]!r}, so it cannot continue the RL prompt")
  fence = template_for(problem).stops[0]
  return solution[len(starter):].rstrip() + "\n" + fence


def make_example(problem: Problem, tokenizer: Any) -> Example:
  if tokenizer.eos_token_id is None:
    raise ValueError("the tokenizer has no eos_token_id; warm-start completions end with EOS")
  prompt = tokenizer.encode(build_prompt(problem, problem.starter_code, tokenizer))
  completion = tokenizer.encode(completion_text(problem)) + [tokenizer.eos_token_id]
  return Example(np.asarray(prompt, np.int32), np.asarray(completion, np.int32))


def make_examples(problems: Sequence[Problem], tokenizer: Any,
                  max_len: int) -> tuple[list[Example], int]:
  """Examples of at most `max_len` tokens, and how many longer ones were dropped."""
  examples = [make_example(p, tokenizer) for p in problems]
  kept = [e for e in examples if len(e.prompt) + len(e.completion) <= max_len]
  if not kept:
    raise ValueError(f"no warm-start example fits in max_len={max_len} tokens "
                     f"({len(examples)} problems)")
  return kept, len(examples) - len(kept)


def batch_indices(step: int, batch_size: int, num_examples: int, seed: int) -> np.ndarray:
  """Example indices [B] of `step` in the endless stream of per-epoch permutations."""
  if num_examples < 1 or batch_size < 1:
    raise ValueError(f"need num_examples >= 1 and batch_size >= 1, got {num_examples}, "
                     f"{batch_size}")
  positions = np.arange(step * batch_size, (step + 1) * batch_size)
  epochs, offsets = np.divmod(positions, num_examples)
  perms = {int(e): np.random.default_rng((seed, int(e))).permutation(num_examples)
           for e in np.unique(epochs)}
  return np.array([perms[int(e)][o] for e, o in zip(epochs, offsets)], np.int64)


def collate(examples: Sequence[Example], pad_id: int, pad_multiple: int = 32) -> dict:
  """Right-padded batch: tokens / attention_mask / loss_mask [B, T] (loss on completions)."""
  lengths = [len(e.prompt) + len(e.completion) for e in examples]
  width = -(-max(lengths) // pad_multiple) * pad_multiple
  tokens = np.full((len(examples), width), pad_id, np.int32)       # [B, T]
  attention = np.zeros((len(examples), width), np.int32)           # [B, T]
  loss = np.zeros((len(examples), width), np.int32)                # [B, T]
  for row, (e, n) in enumerate(zip(examples, lengths)):
    tokens[row, :n] = np.concatenate([e.prompt, e.completion])
    attention[row, :n] = 1
    loss[row, len(e.prompt):n] = 1
  return {"tokens": tokens, "attention_mask": attention, "loss_mask": loss}


def batch_for_step(examples: Sequence[Example], step: int, batch_size: int, seed: int,
                   pad_id: int, pad_multiple: int = 32) -> dict:
  rows = batch_indices(step, batch_size, len(examples), seed)
  return collate([examples[i] for i in rows], pad_id, pad_multiple)
