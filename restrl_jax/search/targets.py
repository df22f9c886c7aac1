"""What a finished search yields: intermediate value targets (docs/method.md §5.3) and the sample budget.

The terminal targets of §5.3 (every full sampled program with its own executed reward) live with
the driver's host-side sample records, not in the tree.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from restrl_jax.search.tree import Tree, values


class ValueTargets(NamedTuple):
  """Intermediate value targets: V(s) of every expanded node (root included) with N(s) > 0."""
  mask: jax.Array   # [B, N] bool  which nodes are targets
  value: jax.Array  # [B, N] float32 V(s) = W(s) / N(s) (0 where not a target)


@jax.jit
def value_targets(tree: Tree) -> ValueTargets:
  """Spec §5.3 (2): every `fully_expanded` node with its value at the end of the search.

  Terminal nodes are never expanded, so they are not here (they appear as full programs). An
  expanded node with N = 0 (only if the driver skipped its backup) is excluded, not given V = 0.
  """
  mask = tree.expanded & (tree.visits > 0)  # [B, N]
  return ValueTargets(mask, jnp.where(mask, values(tree), 0.0))


def value_target_lists(tree: Tree) -> list[tuple[np.ndarray, np.ndarray]]:
  """Host side: per tree, (node ids [k] int32, values [k] float32) of its value targets."""
  targets = jax.device_get(value_targets(tree))
  return [(np.flatnonzero(m).astype(np.int32), v[m].astype(np.float32))
          for m, v in zip(targets.mask, targets.value)]


def sample_budget(tree: Tree) -> jax.Array:
  """Sampled programs per tree so far: expansions x n (the equal-budget axis, docs/method.md §7).  # [B]"""
  return tree.num_samples


def expansions_for_budget(budget: int, num_sample: int) -> int:
  """How many expansions of `num_sample` samples fit in a budget of sampled programs."""
  if num_sample < 1 or budget < 0:
    raise ValueError(f"expansions_for_budget: need budget >= 0 and num_sample >= 1, got "
                     f"budget={budget}, num_sample={num_sample}")
  return budget // num_sample
