"""Value-model data (docs/method.md §5.3, §6): records -> texts and targets -> left-padded token batches.

A record is a dict with the raw problem text `prompt`, a program prefix `state` and a target
`value` in [0, 1] (the original repo's field names `answer` / `reward` are accepted too). The
model input is `value_model_input(prompt, state)`, tokenized without a chat template, truncated
from the LEFT to `max_length` tokens (the end of the state is what matters) and left-padded.
"""
from __future__ import annotations

import math
import os
from typing import Any, NamedTuple, Sequence

import numpy as np

from restrl_jax import io_utils
from restrl_jax.data.prompts import value_model_input

DEFAULT_KINDS = ("node", "program")


class ValueExample(NamedTuple):
  text: str
  target: float
  problem_id: str


def _field(record: dict, names: Sequence[str], index: int, source: str) -> Any:
  for name in names:
    if name in record:
      return record[name]
  raise ValueError(f"{source}: record {index} has none of the fields {list(names)}")


def examples_from_records(records: Sequence[dict], kinds: Sequence[str] | None = DEFAULT_KINDS,
                          source: str = "records") -> list[ValueExample]:
  """Value examples of the records whose `kind` is in `kinds` (records without a kind count)."""
  out = []
  for i, r in enumerate(records):
    if kinds is not None and r.get("kind", kinds[0]) not in kinds:
      continue
    target = float(_field(r, ("value", "reward"), i, source))
    if not 0.0 <= target <= 1.0 or math.isnan(target):
      raise ValueError(f"{source}: record {i} has value {target}, outside [0, 1]")
    text = value_model_input(str(_field(r, ("prompt",), i, source)),
                             str(_field(r, ("state", "answer"), i, source)))
    out.append(ValueExample(text, target, str(r.get("problem_id", ""))))
  return out


def dedupe_examples(examples: Sequence[ValueExample]) -> list[ValueExample]:
  """One example per distinct (problem, text), its target the mean of the duplicates' (a program
  sampled k times is one example, not k), in first-occurrence order."""
  groups: dict[tuple[str, str], list[float]] = {}
  for e in examples:
    groups.setdefault((e.problem_id, e.text), []).append(e.target)
  return [ValueExample(text, float(np.mean(ys)), pid) for (pid, text), ys in groups.items()]


def read_examples(path: str | os.PathLike, kinds: Sequence[str] | None = DEFAULT_KINDS
                  ) -> list[ValueExample]:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"value records file {str(path)!r} does not exist")
  return examples_from_records(io_utils.read_jsonl(path), kinds, str(path))


def split_examples(examples: Sequence[ValueExample], eval_fraction: float = 0.05,
                   min_eval: int = 100, seed: int = 0
                   ) -> tuple[list[ValueExample], list[ValueExample]]:
  """Random (train, held-out) split: held-out = max(ceil(fraction * N), min_eval) examples,
  but never more than half of them (small record sets keep most for training)."""
  n = len(examples)
  if n < 2:
    raise ValueError(f"split_examples: need at least 2 examples, got {n}")
  if not 0.0 <= eval_fraction < 1.0:
    raise ValueError(f"split_examples: eval_fraction must be in [0, 1), got {eval_fraction}")
  n_eval = max(1, min(max(math.ceil(eval_fraction * n), min_eval), n // 2))
  order = np.random.default_rng(seed).permutation(n)
  held = set(order[:n_eval].tolist())
  return ([e for i, e in enumerate(examples) if i not in held],
          [e for i, e in enumerate(examples) if i in held])


def encode(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[np.ndarray]:
  """Token ids of each text, left-truncated to its last `max_length` tokens."""
  if max_length < 1:
    raise ValueError(f"encode: max_length must be >= 1, got {max_length}")
  out = []
  for text in texts:
    ids = np.asarray(tokenizer(text)["input_ids"], np.int32)
    if len(ids) == 0:
      raise ValueError(f"encode: text {text[:40]!r} encodes to no tokens")
    out.append(ids[-max_length:])
  return out


def padded_length(longest: int, pad_multiple: int, max_length: int) -> int:
  """Bucketed sequence length: the next power-of-two multiple of `pad_multiple`, <= max_length."""
  size = pad_multiple
  while size < longest:
    size *= 2
  return min(size, max(max_length, longest))


def make_batch(seqs: Sequence[np.ndarray], targets: Sequence[float], batch_size: int,
               pad_id: int, pad_multiple: int = 32, max_length: int = 2048) -> dict:
  """Left-padded batch of `batch_size` rows (rows past len(seqs) have weight 0).

  tokens [B, T] int32, mask [B, T] int32, target [B] float32, weight [B] float32.
  """
  if not 0 < len(seqs) <= batch_size:
    raise ValueError(f"make_batch: need 1..{batch_size} sequences, got {len(seqs)}")
  t = padded_length(max(len(s) for s in seqs), pad_multiple, max_length)
  tokens = np.full((batch_size, t), pad_id, np.int32)
  mask = np.zeros((batch_size, t), np.int32)
  target, weight = np.zeros(batch_size, np.float32), np.zeros(batch_size, np.float32)
  for i, (s, y) in enumerate(zip(seqs, targets)):
    tokens[i, t - len(s):], mask[i, t - len(s):] = s, 1
    target[i], weight[i] = y, 1.0
  mask[len(seqs):, -1] = 1  # filler rows attend to one pad token (no NaN), weight 0
  return {"tokens": tokens, "mask": mask, "target": target, "weight": weight}


def epoch_order(num_examples: int, epoch: int, seed: int) -> np.ndarray:
  """The example order of an epoch (a function of (seed, epoch), so resuming is exact)."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples)
