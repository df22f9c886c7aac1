"""Read-only walks of the tree: UCT selection of a leaf (docs/method.md §5.2 SELECT) and root paths.

Every function takes the batched `Tree` and is jitted; internally it is a function of one tree,
vmapped over the B trees, with a `jax.lax.while_loop` over depth (as mctx's `simulate`).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from restrl_jax.search.tree import NO_NODE, ROOT, Tree, check_nodes, node_value


def _uct_one(tree: Tree, node: jax.Array, c: jax.Array, eps: jax.Array) -> jax.Array:
  """UCT of each child slot of `node` in one (unbatched) tree; -inf for empty/hidden.  # [W]

  UCT(c) = V(c) + C * sqrt((1 + ln N(parent)) / (eps + N(c))). ln N(parent) uses max(N, 1):
  the original would raise on ln 0, which only happens if the driver selects before backing up.
  """
  kids = tree.children[node]  # [W]
  has = kids >= 0
  safe = jnp.where(has, kids, ROOT)  # [W]
  n_child = tree.visits[safe].astype(jnp.float32)  # [W]
  v_child = node_value(tree.visits[safe], tree.value_sum[safe])  # [W]
  n_parent = jnp.maximum(tree.visits[node], 1).astype(jnp.float32)
  bonus = c * jnp.sqrt((1.0 + jnp.log(n_parent)) / (eps + n_child))  # [W]
  return jnp.where(has & tree.visible[safe], v_child + bonus, -jnp.inf)


@jax.jit
def child_uct(tree: Tree, node: jax.Array, c: float, eps: float) -> jax.Array:
  """UCT scores of the child slots of `node` [B]; -inf for empty or hidden slots.  # [B, W]"""
  node = check_nodes(tree, node, "child_uct: node")
  return jax.vmap(_uct_one, in_axes=(0, 0, None, None))(tree, node, c, eps)


def _select_one(tree: Tree, c: jax.Array, eps: jax.Array, key: jax.Array) -> jax.Array:
  """Descends one tree from the root while the node is expanded; returns the leaf id."""

  def scores(node):
    return _uct_one(tree, node, c, eps)  # [W]

  def descend(state):
    node, _ = state
    return tree.expanded[node] & ~tree.terminal[node] & jnp.any(jnp.isfinite(scores(node)))

  def step(state):
    node, key = state
    key, sub = jax.random.split(key)
    s = scores(node)  # [W]
    tied = jnp.isfinite(s) & (s == jnp.max(s))  # [W]
    noise = jax.random.uniform(sub, s.shape)  # [W] uniform choice among the tied best
    slot = jnp.argmax(jnp.where(tied, noise, -1.0))
    return tree.children[node, slot], key

  leaf, _ = jax.lax.while_loop(descend, step, (jnp.asarray(ROOT, jnp.int32), key))
  return leaf


@jax.jit
def select(tree: Tree, c: float, eps: float, rng: jax.Array) -> jax.Array:
  """One leaf per tree by UCT descent over VISIBLE children, ties broken at random.  # [B] int32

  Descends while the node is expanded, not terminal and has a visible child, so the result is an
  unexpanded node (to expand), a terminal node (to re-use or evaluate), or the root.
  """
  keys = jax.random.split(rng, tree.batch_size)  # [B] keys
  return jax.vmap(_select_one, in_axes=(0, None, None, 0))(tree, c, eps, keys)


class LeafPlan(NamedTuple):
  """What the driver does with each selected leaf (docs/method.md §5.2, §7); one True per live row."""
  expand: jax.Array    # [B] bool  not terminal: sample n completions and add_children
  reuse: jax.Array     # [B] bool  terminal with N > 0: reuse_terminal_value (backup (1, V))
  evaluate: jax.Array  # [B] bool  terminal with N = 0: score it (execute), backup(leaf, 1, r)


@jax.jit
def plan_leaves(tree: Tree, leaf: jax.Array) -> LeafPlan:
  """Splits the selected leaves [B] by what has to happen to them next."""
  leaf = check_nodes(tree, leaf, "plan_leaves: leaf")
  safe = jnp.maximum(leaf, 0)[:, None]  # [B, 1]
  term = jnp.take_along_axis(tree.terminal, safe, 1)[:, 0]  # [B]
  seen = jnp.take_along_axis(tree.visits, safe, 1)[:, 0] > 0  # [B]
  live = leaf >= 0
  return LeafPlan(live & ~term, live & term & seen, live & term & ~seen)


class Path(NamedTuple):
  """Root-to-node paths, padded with NO_NODE after `length` entries."""
  nodes: jax.Array     # [B, D] int32 node ids root..node
  line_ids: jax.Array  # [B, D] int32 their line ids (the root's is its root_line_id)
  length: jax.Array    # [B] int32 depth(node) + 1; 0 for NO_NODE rows


def _path_one(tree: Tree, node: jax.Array, max_depth: int) -> Path:
  def body(state):
    idx, out = state
    out = out.at[tree.depth[idx]].set(idx, mode="drop")
    return tree.parent[idx], out

  out = jnp.full((max_depth,), NO_NODE, jnp.int32)  # [D]
  _, out = jax.lax.while_loop(lambda s: s[0] >= 0, body, (node, out))
  line_ids = jnp.where(out >= 0, tree.line_id[jnp.maximum(out, 0)], NO_NODE)  # [D]
  length = jnp.where(node >= 0, tree.depth[jnp.maximum(node, 0)] + 1, 0)
  return Path(out, line_ids, length)


@functools.partial(jax.jit, static_argnames=("max_depth",))
def path(tree: Tree, node: jax.Array, max_depth: int | None = None) -> Path:
  """Node ids and line ids from the root down to `node` [B] (for rebuilding prompts).

  `max_depth` (static) is the padded length D; the default, the capacity N, always suffices.
  With a smaller D, paths longer than D are cut after D entries and `length` exceeds D.
  """
  node = check_nodes(tree, node, "path: node")
  d = tree.capacity if max_depth is None else max_depth
  if d < 1:
    raise ValueError(f"path: max_depth must be >= 1, got {max_depth}")
  return jax.vmap(_path_one, in_axes=(0, 0, None))(tree, node, d)
