"""`SamplingParams`: what to generate (length, temperature, truncation, stops, seed).

Conventions (same as vLLM / Hugging Face unless noted):
- `temperature == 0` means greedy decoding (argmax); top-p / top-k are then ignored.
- Truncation order is temperature -> top-k -> top-p (Hugging Face's warper order).
- `top_k == 0` and `top_p == 1.0` switch the respective truncation off (no sort is done then).
- `stop_strings` are matched on the decoded completion text; the returned text is cut right before
  the first occurrence of any of them (the stop string itself is not returned, as in vLLM).
- `stop_token_ids` are extra end-of-sequence ids on top of the model config's `eos_token_id`s;
  such a token ends the row with finish_reason "eos" and IS kept in `tokens` (its log-prob is part
  of the sequence's log-likelihood, which RL needs) but not in `text`.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence


@dataclasses.dataclass(frozen=True)
class SamplingParams:
  """Generation settings; see the module docstring for the conventions."""
  max_new_tokens: int = 1024
  temperature: float = 0.7
  top_p: float = 1.0
  top_k: int = 0
  stop_strings: tuple[str, ...] = ()
  stop_token_ids: tuple[int, ...] = ()
  seed: int = 0
  # Host-side stop-string check every `stop_check_interval` decode steps (only when
  # `stop_strings` is non-empty; otherwise the whole decode loop runs without a host round-trip).
  stop_check_interval: int = 32

  def __post_init__(self):
    if isinstance(self.stop_strings, str):
      raise TypeError("SamplingParams.stop_strings must be a sequence of strings, not one string "
                      f"({self.stop_strings!r}); wrap it in a tuple")
    object.__setattr__(self, "stop_strings", tuple(self.stop_strings))
    object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))
    _check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, ">= 1")
    _check(self.temperature >= 0.0, "temperature", self.temperature, ">= 0")
    _check(0.0 < self.top_p <= 1.0, "top_p", self.top_p, "in (0, 1]")
    _check(self.top_k >= 0, "top_k", self.top_k, ">= 0 (0 = off)")
    _check(self.stop_check_interval >= 1, "stop_check_interval", self.stop_check_interval, ">= 1")
    for s in self.stop_strings:
      _check(isinstance(s, str) and len(s) > 0, "stop_strings", s, "non-empty strings")

  @property
  def greedy(self) -> bool:
    return self.temperature == 0.0


def _check(ok: bool, field: str, value, rule: str) -> None:
  if not ok:
    raise ValueError(f"SamplingParams.{field} must be {rule}, got {value!r}")


def eos_ids(config_eos: Sequence[int], params: SamplingParams) -> tuple[int, ...]:
  """Sorted, de-duplicated end-of-sequence ids: the model's plus the request's."""
  return tuple(sorted(set(int(t) for t in config_eos) | set(params.stop_token_ids)))

