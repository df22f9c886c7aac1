"""A batch of line-level search trees held as fixed-size arrays (docs/method.md §5.1, §7).

One `Tree` holds B independent trees (one per problem), each with room for N nodes, each node with
at most W children. Node 0 is the root; nodes are numbered in creation order and never freed, so
the arrays never move and every tree operation is a jitted, vmapped function of the arrays
(`select.py`, `update.py`, `targets.py`). There are no Python node objects: a node's text lives
host-side in a table of lines, and `line_id` points into it, so the driver rebuilds a node's
program prefix from the line ids on its root path (`select.path`).

Conventions: `NO_NODE` (-1) marks "no node" in `parent`, `children` and in node-id arguments (a
row whose node argument is `NO_NODE` is left untouched by every update). V(s) = W(s) / N(s), taken
as 0 while N(s) = 0 (docs/method.md §5.2: new children start at V = 0).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

ROOT = 0
NO_NODE = -1


class Tree(NamedTuple):
  """B search trees of capacity N nodes and width W (a NamedTuple, hence a JAX pytree)."""
  visits: jax.Array          # [B, N] int32    N(s), visit count
  value_sum: jax.Array       # [B, N] float32  W(s), sum of backed-up rewards / values
  parent: jax.Array          # [B, N] int32    parent node id; NO_NODE for the root and free slots
  children: jax.Array        # [B, N, W] int32 child ids in priority order; NO_NODE in empty slots
  num_children: jax.Array    # [B, N] int32    number of filled child slots
  visible: jax.Array         # [B, N] bool     selectable from its parent (width pruning); root True
  depth: jax.Array           # [B, N] int32    number of lines below the root (root 0)
  expanded: jax.Array        # [B, N] bool     `fully_expanded`: has children, select descends it
  terminal: jax.Array        # [B, N] bool     the node's program is complete; never expanded
  line_id: jax.Array         # [B, N] int32    host line-table index of the line that made the node
  sample_count: jax.Array    # [B, N] int32    sampled completions whose first line gave this node
  num_nodes: jax.Array       # [B] int32       nodes in use (next free id)
  num_expansions: jax.Array  # [B] int32       add_children calls that drew samples for this tree
  num_samples: jax.Array     # [B] int32       sampled programs so far (the search budget)
  overflow: jax.Array        # [B] bool        a new child was dropped for lack of capacity

  @property
  def batch_size(self) -> int:
    return self.visits.shape[0]

  @property
  def capacity(self) -> int:  # also valid on one unbatched tree inside vmap
    return self.visits.shape[-1]

  @property
  def width(self) -> int:
    return self.children.shape[-1]


def init_tree(batch_size: int, capacity: int, width: int, root_line_id: int = NO_NODE) -> Tree:
  """B empty trees (root only, unvisited, unexpanded) with room for `capacity` nodes each."""
  for name, value, low in (("batch_size", batch_size, 1), ("capacity", capacity, 1),
                           ("width", width, 1)):
    if not isinstance(value, int) or value < low:
      raise ValueError(f"init_tree: {name} must be an int >= {low}, got {value!r}")
  bn = (batch_size, capacity)
  zeros_i = jnp.zeros(bn, jnp.int32)
  first = jnp.arange(capacity) == ROOT  # [N]
  return Tree(
      visits=zeros_i,
      value_sum=jnp.zeros(bn, jnp.float32),
      parent=jnp.full(bn, NO_NODE, jnp.int32),
      children=jnp.full(bn + (width,), NO_NODE, jnp.int32),
      num_children=zeros_i,
      visible=jnp.broadcast_to(first, bn),
      depth=zeros_i,
      expanded=jnp.zeros(bn, bool),
      terminal=jnp.zeros(bn, bool),
      line_id=jnp.where(first, root_line_id, NO_NODE).astype(jnp.int32) + zeros_i,
      sample_count=zeros_i,
      num_nodes=jnp.ones((batch_size,), jnp.int32),
      num_expansions=jnp.zeros((batch_size,), jnp.int32),
      num_samples=jnp.zeros((batch_size,), jnp.int32),
      overflow=jnp.zeros((batch_size,), bool),
  )


def capacity_for(iterations: int, num_sample: int) -> int:
  """Nodes needed so that `iterations` expansions of `num_sample` samples never overflow."""
  if iterations < 0 or num_sample < 1:
    raise ValueError(f"capacity_for: need iterations >= 0 and num_sample >= 1, got "
                     f"iterations={iterations}, num_sample={num_sample}")
  return 1 + iterations * num_sample


def node_value(visits: jax.Array, value_sum: jax.Array) -> jax.Array:
  """V = W / N, 0 where N = 0; any matching shapes (e.g. [B, N] or [W])."""
  n = visits.astype(jnp.float32)
  return jnp.where(n > 0, value_sum / jnp.maximum(n, 1.0), 0.0)


def values(tree: Tree) -> jax.Array:
  """V(s) of every node.  # [B, N] float32"""
  return node_value(tree.visits, tree.value_sum)


def check_nodes(tree: Tree, nodes: jax.Array, name: str) -> jax.Array:
  """Validates a per-tree node-id argument (shape [B], integer) and returns it as int32."""
  nodes = jnp.asarray(nodes)
  if nodes.shape != (tree.batch_size,):
    raise ValueError(f"{name} must have shape [B]={(tree.batch_size,)}, got {nodes.shape}")
  if not jnp.issubdtype(nodes.dtype, jnp.integer):
    raise ValueError(f"{name} must hold integer node ids, got dtype {nodes.dtype}")
  return nodes.astype(jnp.int32)
