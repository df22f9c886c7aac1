"""GRPO training-reward shaping (docs/method.md §3.1; the paper's Eq. 8).

During GRPO the policy generates WITHOUT stop strings, so the reward cuts the completion itself:

    valid    = completion up to the first occurrence of any stop string
    bonus    = +symbol_reward                       if a stop string occurs (the block was closed)
               -trailing_penalty * len(trailing)    trailing = text after valid minus that marker
    reward   = bonus + exec_reward(state + valid)   (0 on any execution failure)

`shape_completion` is pure: it returns the program to execute and the bonus; the caller runs the
program in the sandbox and adds the two (`total_reward`). The program is `state + valid` verbatim
(no rstrip), as in the original reward function. `Shaping` is this shaping as the rollout engine's
extraction (`rollout.start_rollout(..., extract=Shaping(...))`).
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

from restrl_jax.data.prompts import FENCE_STOPS, first_stop

SYMBOL_REWARD = 1e-3
TRAILING_PENALTY = 1e-6


class ShapedCompletion(NamedTuple):
  program: str       # state + valid: what the sandbox executes
  bonus: float       # symbol reward minus trailing penalty (0 when no stop string occurs)
  closed: bool       # a stop string occurred


def _strip_marker(trailing: str, stops: Sequence[str]) -> str:
  """Drop the stop string `trailing` starts with (the longest if several match)."""
  matches = [s for s in stops if s and trailing.startswith(s)]
  return trailing[len(max(matches, key=len)):] if matches else trailing


def shape_completion(state: str, completion: str, stops: Sequence[str] = FENCE_STOPS,
                     symbol_reward: float = SYMBOL_REWARD,
                     trailing_penalty: float = TRAILING_PENALTY) -> ShapedCompletion:
  """Split a raw completion into the program to run and the shaping bonus of §3.1."""
  if not stops or not all(isinstance(s, str) and s for s in stops):
    raise ValueError(f"stops must be non-empty strings, got {stops!r}")
  hit = first_stop(completion, stops)
  if hit is None:
    return ShapedCompletion(state + completion, 0.0, False)
  valid = completion[:hit[0]]
  trailing = _strip_marker(completion[hit[0]:], stops)
  bonus = symbol_reward - trailing_penalty * len(trailing)
  return ShapedCompletion(state + valid, bonus, True)


def total_reward(shaped: ShapedCompletion, exec_reward: float) -> float:
  """The training reward: shaping bonus + the execution reward of `shaped.program`."""
  return shaped.bonus + float(exec_reward)


@dataclasses.dataclass(frozen=True)
class Shaping:
  """`shape_completion` as the rollout engine's extraction (`rollout.Extract`). With
  `stopped_at_marker` the sampler stopped at the end markers and removed the one it hit (finish
  reason "stop"): the shaping then sees `text + markers[0]` (the bonus, nothing trailing)."""
  symbol_reward: float = SYMBOL_REWARD
  trailing_penalty: float = TRAILING_PENALTY
  stopped_at_marker: bool = False

  def __call__(self, state: str, text: str, markers: tuple[str, ...],
               finish_reason: str) -> ShapedCompletion:
    if self.stopped_at_marker and finish_reason == "stop":
      text = text + markers[0]
    return shape_completion(state, text, markers, self.symbol_reward, self.trailing_penalty)
