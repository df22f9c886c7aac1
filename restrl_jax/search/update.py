"""Tree updates: inserting the children of an expansion, and backing values up (docs/method.md §5.2, §7).

All functions are jitted and vmapped over the B trees; a row whose node argument is NO_NODE is
left unchanged, so the driver can update any subset of the batch.

Width pruning (`width_cap` = the released code's num_decision). The distinct first lines of one expansion
are ranked, the first `width_cap` are visible (selectable), the rest hidden but kept:
  mode="vm":      by V(child) = VM score, highest first (docs/method.md §7; ties: first occurrence).
  mode="collect": by how many of the n samples share that first line, most first (ties: first
                  occurrence). FIX of docs/method.md §9.4: the original ranks by V, which is 0 for every
                  new child, so its stable sort keeps whichever distinct lines came first. The
                  count of a first line among n i.i.d. policy samples is a Monte-Carlo estimate of
                  the policy's probability of that step, so we keep the steps the policy is most
                  likely to take -- the value targets are expectations under that policy, and
                  those subtrees carry most of its probability mass. Among equal counts,
                  first-occurrence order is itself uniformly random (the samples are
                  exchangeable) and reproducible, so no extra seed is needed.
Children are stored in rank order, and node ids are allocated in rank order, so when the tree is
full the lowest-ranked (hidden first) children are the ones dropped (`Tree.overflow` is set).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from restrl_jax.search.tree import NO_NODE, Tree, check_nodes, node_value

MODES = ("collect", "vm")


class Inserted(NamedTuple):
  """What `add_children` did, per tree and sample."""
  sample_node: jax.Array  # [B, n] int32 node of each sample's first line; NO_NODE if not stored
  num_new: jax.Array      # [B] int32 children created
  dropped: jax.Array      # [B] int32 distinct first lines dropped for lack of capacity


def _dedupe(ids: jax.Array, valid: jax.Array):
  """First occurrences, representative index and multiplicity of each sample's line id."""
  n = ids.shape[0]
  same = (ids[:, None] == ids[None, :]) & valid[:, None] & valid[None, :]  # [n, n]
  earlier = jnp.tril(jnp.ones((n, n), bool), k=-1)  # [j, i]: i < j
  first = valid & ~jnp.any(same & earlier, axis=1)  # [n]
  rep = jnp.argmax(same, axis=1)  # [n] first i with the same id as j
  count = jnp.sum(same, axis=1).astype(jnp.int32)  # [n]
  return first, rep, count


def _rank(first: jax.Array, key: jax.Array) -> jax.Array:
  """Rank of each first occurrence by key (descending), ties by position.  # [n] int32"""
  n = key.shape[0]
  pos = jnp.arange(n)
  ahead = (key[None, :] > key[:, None]) | ((key[None, :] == key[:, None]) &
                                           (pos[None, :] < pos[:, None]))  # [j, i]: i before j
  return jnp.sum(ahead & first[None, :], axis=1).astype(jnp.int32)


def _insert_one(tree: Tree, parent: jax.Array, ids: jax.Array, term: jax.Array,
                valid: jax.Array, init_value: jax.Array, width_cap: int, mode: str):
  cap, n = tree.capacity, ids.shape[0]
  active = parent >= 0
  p = jnp.maximum(parent, 0)
  valid = valid & active & ~tree.expanded[p] & ~tree.terminal[p]  # [n]
  first, rep, count = _dedupe(ids, valid)
  key = init_value if mode == "vm" else count.astype(jnp.float32)  # [n]
  rank = _rank(first, key)  # [n]
  room = cap - tree.num_nodes
  alloc = first & (rank < room)  # [n]
  new_id = jnp.where(alloc, tree.num_nodes + rank, cap)  # [n]; cap = out of range, dropped
  num_new = jnp.sum(alloc).astype(jnp.int32)
  if mode == "vm":  # new child N = 1, W = v; each duplicate adds N += 1, W += V(child) = v
    visits, wsum = count, count * init_value
  else:  # collection mode: new children start at N = 0, V = 0
    visits, wsum = jnp.zeros_like(count), jnp.zeros_like(init_value)

  def put(x, v):
    return x.at[new_id].set(v, mode="drop")

  tree = tree._replace(
      visits=put(tree.visits, visits),
      value_sum=put(tree.value_sum, wsum),
      parent=put(tree.parent, jnp.broadcast_to(parent, (n,))),
      visible=put(tree.visible, rank < width_cap),
      depth=put(tree.depth, jnp.broadcast_to(tree.depth[p] + 1, (n,))),
      terminal=put(tree.terminal, term),
      line_id=put(tree.line_id, ids),
      sample_count=put(tree.sample_count, count),
      children=tree.children.at[p, jnp.where(alloc, rank, tree.width)].set(new_id, mode="drop"),
      num_children=tree.num_children.at[p].add(num_new),
      expanded=tree.expanded.at[p].set(tree.expanded[p] | (num_new > 0)),
      num_nodes=tree.num_nodes + num_new,
      num_expansions=tree.num_expansions + active.astype(jnp.int32),
      num_samples=tree.num_samples + n * active.astype(jnp.int32),
      overflow=tree.overflow | (jnp.sum(first) > num_new),
  )
  sample_node = jnp.where(valid & alloc[rep], new_id[rep], NO_NODE).astype(jnp.int32)  # [n]
  return tree, Inserted(sample_node, num_new, jnp.sum(first).astype(jnp.int32) - num_new)


@functools.partial(jax.jit, static_argnames=("width_cap", "mode"))
def add_children(tree: Tree, parent: jax.Array, line_ids: jax.Array, is_terminal: jax.Array,
                 valid: jax.Array, init_value: jax.Array | None, width_cap: int,
                 mode: str) -> tuple[Tree, Inserted]:
  """Expands `parent` [B] with the first lines of n sampled completions per tree.

  line_ids [B, n]: interned ids of each sample's action line (equal lines MUST have equal ids;
  the driver keys its table by the action string, e.g. (line, is_terminal)); is_terminal [B, n];
  valid [B, n] (False: the sample is ignored, e.g. nothing could be extracted); init_value [B, n]:
  mode "vm" only, V(child) = clipped VM score of the child state (the first occurrence's is used).
  A row is skipped when parent is NO_NODE; its samples are ignored (not stored) when the parent
  is already expanded or terminal. Every row with parent >= 0 counts n samples into the budget.
  The parent is marked expanded when at least one child was stored. Requires n <= W.
  """
  if mode not in MODES:
    raise ValueError(f"add_children: mode must be one of {MODES}, got {mode!r}")
  if not isinstance(width_cap, int) or width_cap < 1:
    raise ValueError(
        f"add_children: width_cap (num_decision) must be an int >= 1, got {width_cap!r}")
  parent = check_nodes(tree, parent, "add_children: parent")
  line_ids = jnp.asarray(line_ids)
  b, n = tree.batch_size, line_ids.shape[-1] if line_ids.ndim == 2 else -1
  if line_ids.ndim != 2 or line_ids.shape[0] != b:
    raise ValueError(f"add_children: line_ids must have shape [B={b}, n], got {line_ids.shape}")
  if n > tree.width:
    raise ValueError(
        f"add_children: n={n} samples per expansion exceed the tree width W={tree.width}")
  if not jnp.issubdtype(line_ids.dtype, jnp.integer):
    raise ValueError(f"add_children: line_ids must be integer, got dtype {line_ids.dtype}")
  for name, x in (("is_terminal", is_terminal), ("valid", valid)):
    if jnp.shape(x) != (b, n):
      raise ValueError(f"add_children: {name} must have shape {(b, n)}, got {jnp.shape(x)}")
  if mode == "vm":
    if init_value is None or jnp.shape(init_value) != (b, n):
      raise ValueError(f"add_children: mode='vm' needs init_value of shape {(b, n)}, got "
                       f"{None if init_value is None else jnp.shape(init_value)}")
    init_value = jnp.asarray(init_value, jnp.float32)
  elif init_value is not None:
    raise ValueError("add_children: init_value is only used in mode='vm'; pass None")
  else:
    init_value = jnp.zeros((b, n), jnp.float32)
  insert = jax.vmap(_insert_one, in_axes=(0, 0, 0, 0, 0, 0, None, None))
  return insert(tree, parent, line_ids.astype(jnp.int32), jnp.asarray(is_terminal, bool),
                jnp.asarray(valid, bool), init_value, width_cap, mode)


def _backup_one(tree: Tree, node: jax.Array, count: jax.Array, wsum: jax.Array) -> Tree:
  def body(state):
    idx, visits, value_sum = state
    return tree.parent[idx], visits.at[idx].add(count), value_sum.at[idx].add(wsum)

  _, visits, value_sum = jax.lax.while_loop(
      lambda s: s[0] >= 0, body, (node, tree.visits, tree.value_sum))
  return tree._replace(visits=visits, value_sum=value_sum)


@jax.jit
def backup(tree: Tree, node: jax.Array, count: jax.Array, value_sum: jax.Array) -> Tree:
  """N += count and W += value_sum at `node` [B] and every ancestor (count [B], value_sum [B]).

  Collection mode after expanding s: backup(s, n, sum of the n executed rewards).
  """
  node = check_nodes(tree, node, "backup: node")
  count = jnp.broadcast_to(jnp.asarray(count, jnp.int32), node.shape)  # [B]
  value_sum = jnp.broadcast_to(jnp.asarray(value_sum, jnp.float32), node.shape)  # [B]
  return jax.vmap(_backup_one)(tree, node, count, value_sum)


@jax.jit
def backup_from_children(tree: Tree, node: jax.Array) -> Tree:
  """VM-MCTS backup (docs/method.md §7): n' = sum N(c), w' = sum W(c) over ALL children of `node` [B]
  (visible or hidden), added to the node and its ancestors."""
  node = check_nodes(tree, node, "backup_from_children: node")
  safe = jnp.maximum(node, 0)  # [B]
  kids = jnp.take_along_axis(tree.children, safe[:, None, None], axis=1)[:, 0]  # [B, W]
  has = kids >= 0
  kid_safe = jnp.maximum(kids, 0)  # [B, W]
  n_sum = jnp.sum(jnp.where(has, jnp.take_along_axis(tree.visits, kid_safe, 1), 0), axis=1)
  w_sum = jnp.sum(jnp.where(has, jnp.take_along_axis(tree.value_sum, kid_safe, 1), 0.0), axis=1)
  return backup(tree, node, n_sum, w_sum)


@jax.jit
def reuse_terminal_value(tree: Tree, leaf: jax.Array) -> tuple[Tree, jax.Array]:
  """Terminal leaves with N > 0 re-use their cached value: backup(leaf, 1, V(leaf)).

  Returns the tree and `reused` [B] bool. Terminal leaves with N = 0 (collection mode, first
  visit) are not touched: the driver executes them and calls backup(leaf, 1, reward).
  """
  leaf = check_nodes(tree, leaf, "reuse_terminal_value: leaf")
  safe = jnp.maximum(leaf, 0)[:, None]  # [B, 1]
  n = jnp.take_along_axis(tree.visits, safe, 1)[:, 0]  # [B]
  w = jnp.take_along_axis(tree.value_sum, safe, 1)[:, 0]  # [B]
  term = jnp.take_along_axis(tree.terminal, safe, 1)[:, 0]  # [B]
  reused = (leaf >= 0) & term & (n > 0)
  tree = backup(tree, jnp.where(reused, leaf, NO_NODE), jnp.ones_like(n), node_value(n, w))
  return tree, reused
