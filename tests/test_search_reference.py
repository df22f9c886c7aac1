"""The array MCTS against outside references.

1. A pure-Python node-object MCTS written from docs/method.md §5.2 / §7 (with the documented pruning fix)
   runs in lock-step with the array version on B = 4 random problems: every array selection
   must be a UCT argmax of the reference (ties may go either way), both get the same fake
   samples, and at the end the two trees agree node for node.
2. mctx's own `backward` (visit counts and running-mean values) on random trees.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from restrl_jax.search import (NO_NODE, Tree, add_children, backup, backup_from_children,
                               capacity_for, init_tree, path, plan_leaves, reuse_terminal_value,
                               sample_budget, select)

B, N_SAMPLE, ITERS = 4, 5, 15
LINE_P = [0.1, 0.3, 0.25, 0.2, 0.15]  # line 0 is a terminal line ("return ...")
MAX_DEPTH = 5  # lines at this depth are terminal


class Node:
  """Spec §5.1 node: N, W, children keyed by action, fully_expanded, visible."""

  def __init__(self, line, parent, depth, terminal):
    self.line, self.parent, self.depth, self.terminal = line, parent, depth, terminal
    self.n, self.w, self.count = 0, 0.0, 0
    self.children, self.expanded, self.visible = {}, False, True

  @property
  def v(self):
    return self.w / self.n if self.n else 0.0

  def state(self):
    return () if self.parent is None else self.parent.state() + (self.line,)


def ref_uct(parent, child, c, eps):
  return child.v + c * math.sqrt((1 + math.log(max(parent.n, 1))) / (eps + child.n))


def ref_walk(root, lines, c, eps):
  """Follows the array's path, checking each step is a UCT argmax of the reference."""
  node = root
  for line in lines:
    assert node.expanded and not node.terminal
    scores = {k: ref_uct(node, ch, c, eps) for k, ch in node.children.items() if ch.visible}
    assert line in scores and scores[line] >= max(scores.values()) - 1e-5, (scores, line)
    node = node.children[line]
  assert node.terminal or not any(ch.visible for ch in node.children.values())
  return node


def ref_backup(node, n, w):
  while node is not None:
    node.n, node.w, node = node.n + n, node.w + w, node.parent


def ref_expand(node, lines, terms, vals, cap, mode):
  for line, term, val in zip(lines, terms, vals):
    child = node.children.get(line)
    if child is None:
      child = node.children[line] = Node(line, node, node.depth + 1, term)
      if mode == "vm":
        child.n, child.w = 1, val
    elif mode == "vm":
      child.n, child.w = child.n + 1, child.w + child.v
    child.count += 1
  key = (lambda ch: -ch.v) if mode == "vm" else (lambda ch: -ch.count)
  for rank, ch in enumerate(sorted(node.children.values(), key=key)):  # stable sort
    ch.visible = rank < cap
  node.expanded = True


def fake_samples(seed, b, state):
  """n first lines (+ terminal flags, rewards, VM values of the child states) for one node."""
  rng = np.random.default_rng([seed, b, 1, *state])
  lines = rng.choice(len(LINE_P), N_SAMPLE, p=LINE_P)
  terms = (lines == 0) | (len(state) + 1 >= MAX_DEPTH)
  rewards = rng.choice([0.0, 0.25, 0.5, 1.0], N_SAMPLE)
  vm = [np.random.default_rng([seed, b, 2, *state, int(l)]).integers(0, 9) / 8 for l in lines]
  return lines, terms, rewards, np.array(vm)


def exec_reward(seed, b, state):
  return float(np.random.default_rng([seed, b, 3, *state]).choice([0.0, 0.5, 1.0]))


def run_lockstep(seed, mode, c, cap):
  tree = init_tree(B, capacity_for(ITERS, N_SAMPLE), N_SAMPLE)
  roots = [Node(None, None, 0, False) for _ in range(B)]
  key = jax.random.key(seed)
  for it in range(ITERS):
    key, sub = jax.random.split(key)
    leaf = select(tree, c, 0.1, sub)
    paths = path(tree, leaf)
    refs = [ref_walk(roots[b], np.asarray(paths.line_ids[b, 1:paths.length[b]]).tolist(), c, 0.1)
            for b in range(B)]
    active = np.array([(it + b) % (b + 1) == 0 for b in range(B)])  # trees progress unevenly
    leaf = jnp.where(jnp.asarray(active), leaf, NO_NODE)
    plan = jax.device_get(plan_leaves(tree, leaf))
    run_exec, grow = plan.evaluate, plan.expand
    assert (run_exec == [a and r.terminal and r.n == 0 for a, r in zip(active, refs)]).all()
    assert (grow == [a and not r.terminal for a, r in zip(active, refs)]).all()
    tree, reused = reuse_terminal_value(tree, leaf)
    assert (np.asarray(reused) == plan.reuse).all()
    for b in range(B):
      if active[b] and refs[b].terminal:
        assert bool(reused[b]) == (refs[b].n > 0)
        if refs[b].n > 0:
          ref_backup(refs[b], 1, refs[b].v)
    rewards = [exec_reward(seed, b, refs[b].state()) if run_exec[b] else 0.0 for b in range(B)]
    for b in np.flatnonzero(run_exec):
      ref_backup(refs[b], 1, rewards[b])
    tree = backup(tree, jnp.where(jnp.asarray(run_exec), leaf, NO_NODE), 1, jnp.array(rewards))
    samples = [fake_samples(seed, b, refs[b].state()) for b in range(B)]
    lines, terms, rews, vms = (np.stack(x) for x in zip(*samples))
    parent = jnp.where(jnp.asarray(grow), leaf, NO_NODE)
    tree, info = add_children(tree, parent, lines, terms, np.ones(lines.shape, bool),
                              vms if mode == "vm" else None, cap, mode)
    for b in np.flatnonzero(grow):
      ref_expand(refs[b], lines[b].tolist(), terms[b].tolist(), vms[b].tolist(), cap, mode)
      ids = np.asarray(info.sample_node[b])
      assert (np.asarray(tree.line_id[b])[ids] == lines[b]).all()
      if mode == "collect":
        ref_backup(refs[b], N_SAMPLE, float(rews[b].sum()))
      else:
        ref_backup(refs[b], sum(ch.n for ch in refs[b].children.values()),
                   sum(ch.w for ch in refs[b].children.values()))
    if mode == "collect":
      tree = backup(tree, parent, N_SAMPLE, jnp.asarray(np.where(grow, rews.sum(1), 0.0)))
    else:
      tree = backup_from_children(tree, parent)
  return tree, roots


def assert_same_trees(tree: Tree, roots):
  t = jax.device_get(tree)
  for b, root in enumerate(roots):
    seen = 0
    stack = [(0, root)]
    while stack:
      i, ref = stack.pop()
      seen += 1
      assert t.visits[b, i] == ref.n, (b, i)
      np.testing.assert_allclose(t.value_sum[b, i], ref.w, rtol=1e-5, atol=1e-5)
      assert (t.visible[b, i], t.expanded[b, i], t.terminal[b, i]) == (
          ref.visible, ref.expanded, ref.terminal), (b, i)
      assert t.depth[b, i] == ref.depth and (i == 0 or t.sample_count[b, i] == ref.count)
      kids = [k for k in t.children[b, i] if k >= 0]
      assert sorted(int(t.line_id[b, k]) for k in kids) == sorted(ref.children), (b, i)
      stack += [(k, ref.children[int(t.line_id[b, k])]) for k in kids]
    assert seen == t.num_nodes[b] and not t.overflow[b]


@pytest.mark.parametrize("mode, c, cap", [("collect", 0.2, 2), ("vm", 0.1, 2)])
@pytest.mark.parametrize("seed", [0, 1])
def test_array_mcts_agrees_with_node_object_reference(seed, mode, c, cap):
  tree, roots = run_lockstep(seed, mode, c, cap)
  assert_same_trees(tree, roots)
  assert int(np.asarray(tree.num_nodes).min()) > 3  # the trees really grew
  assert (np.asarray(sample_budget(tree)) % N_SAMPLE == 0).all()


def test_backup_matches_mctx_backward():
  mctx = pytest.importorskip("mctx")
  from mctx._src import search as mctx_search
  rng = np.random.default_rng(0)
  nb, nn = 2, 12
  parents = np.full((nb, nn), -1, np.int32)
  parents[:, 1:] = [[rng.integers(0, i) for i in range(1, nn)] for _ in range(nb)]
  slot = np.zeros((nb, nn), np.int32)
  for b in range(nb):
    for i in range(1, nn):
      slot[b, i] = np.sum(parents[b, 1:i] == parents[b, i])
  leaf_values = rng.random((nb, nn)).astype(np.float32)
  z = lambda *s: jnp.zeros((nb, nn) + s, jnp.float32)
  mt = mctx.Tree(
      node_visits=jnp.zeros((nb, nn), jnp.int32), raw_values=z(), node_values=z(),
      parents=jnp.asarray(parents), action_from_parent=jnp.asarray(slot),
      children_index=jnp.full((nb, nn, nn), -1, jnp.int32), children_prior_logits=z(nn),
      children_visits=jnp.zeros((nb, nn, nn), jnp.int32), children_rewards=z(nn),
      children_discounts=jnp.ones((nb, nn, nn)), children_values=z(nn), embeddings=z(),
      root_invalid_actions=jnp.zeros((nb, nn)), extra_data=None)
  ours = init_tree(nb, nn, nn)._replace(parent=jnp.asarray(parents))
  for i in range(nn):  # simulation i creates node i with value v_i (reward 0, discount 1)
    idx = jnp.full((nb,), i, jnp.int32)
    mt = mt.replace(node_visits=mt.node_visits.at[:, i].set(1),
                    node_values=mt.node_values.at[:, i].set(leaf_values[:, i]))
    if i > 0:
      mt = mctx_search.backward(mt, idx)
    ours = backup(ours, idx, 1, jnp.asarray(leaf_values[:, i]))
  np.testing.assert_array_equal(np.asarray(ours.visits), np.asarray(mt.node_visits))
  np.testing.assert_allclose(np.asarray(ours.value_sum / ours.visits),
                             np.asarray(mt.node_values), rtol=1e-5)
