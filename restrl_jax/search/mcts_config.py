"""The pipeline's two searches, as the config's `mcts` section sets them (its keys are the fields,
its defaults the paper's): value-target collection (docs/method.md §5.2) and VM-MCTS decoding
with its baselines at an equal sample budget (§7)."""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from restrl_jax.data.problem import Problem
from restrl_jax.sampling import SamplingParams
from restrl_jax.search.answer_selection import Answer, decode
from restrl_jax.search.collect import collect_config
from restrl_jax.search.driver import SearchConfig, StateScorer


@dataclasses.dataclass(frozen=True)
class MCTSConfig:
  collect_iterations: int = 100
  collect_samples: int = 5          # n: completions per expansion
  collect_width: int = 3            # visible children per node
  collect_c: float = 0.2            # UCT exploration constant
  decode_iterations: int = 15
  decode_samples: int = 5
  decode_width: int = 5
  decode_c: float = 0.1
  decode_budget: int | None = None  # sampled programs per problem; None: iterations x samples
  eps: float = 0.1                  # UCT epsilon (both searches)
  max_steps_factor: int = 4         # decoding: loop cap = factor x expansions
  seed: int = 0

  @property
  def collect_search(self) -> SearchConfig:
    return collect_config(self.collect_iterations, self.collect_samples, self.collect_width,
                          self.collect_c, self.eps, self.seed)

  @property
  def budget(self) -> int:
    """Sampled programs per problem of every decoding method."""
    return self.decode_budget or self.decode_iterations * self.decode_samples

  def decode(self, method: str, problems: Sequence[Problem], sampler: Any,
             sampling_params: SamplingParams, scorer: StateScorer | None,
             tree_ids: Sequence[int] | None = None) -> list[Answer]:
    """`answer_selection.decode` of `method` on the problems at `budget`."""
    return decode(method, problems, sampler, sampling_params, self.budget, scorer,
                  self.decode_samples, self.decode_width, self.decode_c, self.eps, self.seed,
                  tree_ids=tree_ids, max_steps_factor=self.max_steps_factor)
