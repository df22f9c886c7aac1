"""Golden tests of the array search tree's updates: add_children, backups, path, targets, budget."""
import jax.numpy as jnp
import numpy as np
import pytest

from restrl_jax.search import (NO_NODE, add_children, backup, backup_from_children, capacity_for,
                               expansions_for_budget, init_tree, path, reuse_terminal_value,
                               sample_budget, value_target_lists, value_targets, values)


def _expand(tree, parent, ids, *, term=None, valid=None, value=None, cap=3, mode="collect"):
  ids = np.asarray(ids, np.int32)
  term = np.zeros(ids.shape, bool) if term is None else np.asarray(term, bool)
  valid = np.ones(ids.shape, bool) if valid is None else np.asarray(valid, bool)
  value = None if value is None else np.asarray(value, np.float32)
  return add_children(tree, jnp.asarray(parent, jnp.int32), ids, term, valid, value, cap, mode)


def _np(x):
  return np.asarray(x)


def test_init_tree_root_only():
  t = init_tree(3, 7, 4, root_line_id=11)
  assert t.visits.shape == (3, 7) and t.children.shape == (3, 7, 4)
  assert t.visits.dtype == jnp.int32 and t.value_sum.dtype == jnp.float32
  assert (_np(t.num_nodes) == 1).all() and (_np(t.parent) == NO_NODE).all()
  assert (_np(t.line_id[:, 0]) == 11).all() and (_np(t.line_id[:, 1:]) == NO_NODE).all()
  assert _np(t.visible[:, 0]).all() and not _np(t.visible[:, 1:]).any()
  with pytest.raises(ValueError, match="capacity"):
    init_tree(2, 0, 3)


def test_collect_mode_dedupes_and_keeps_most_frequent_first_lines():
  t = init_tree(1, 16, 6)
  t, info = _expand(t, [0], [[7, 8, 9, 8, 9, 9]], cap=2)
  # counts: 9 x3, 8 x2, 7 x1 -> children in rank order 9, 8, 7; only 9 and 8 visible.
  # (The original keeps the first distinct actions, 7 and 8: docs/method.md §9.4.)
  assert _np(t.children[0, 0]).tolist() == [1, 2, 3, -1, -1, -1]
  assert _np(t.line_id[0, 1:4]).tolist() == [9, 8, 7]
  assert _np(t.sample_count[0, 1:4]).tolist() == [3, 2, 1]
  assert _np(t.visible[0, 1:4]).tolist() == [True, True, False]
  assert _np(info.sample_node[0]).tolist() == [3, 2, 1, 2, 1, 1]
  assert _np(t.visits[0, 1:4]).tolist() == [0, 0, 0] and float(t.value_sum[0, 1:4].sum()) == 0
  assert bool(t.expanded[0, 0]) and int(t.num_children[0, 0]) == 3 and int(t.num_nodes[0]) == 4
  assert _np(t.parent[0, 1:4]).tolist() == [0, 0, 0] and _np(t.depth[0, 1:4]).tolist() == [1] * 3
  assert int(info.num_new[0]) == 3 and int(info.dropped[0]) == 0 and not bool(t.overflow[0])


def test_collect_mode_equal_counts_keep_first_occurrence_order():
  t = init_tree(1, 16, 5)
  t, _ = _expand(t, [0], [[5, 6, 6, 5, 4]], cap=2)
  assert _np(t.line_id[0, 1:4]).tolist() == [5, 6, 4]
  assert _np(t.visible[0, 1:4]).tolist() == [True, True, False]


def test_vm_mode_duplicate_accounting_and_value_pruning():
  t = init_tree(1, 16, 5)
  ids = [[1, 2, 1, 3, 1]]
  vals = [[0.2, 0.9, 0.7, 0.5, 0.2]]  # a duplicate's own score is ignored: V(child) is the first
  t, info = _expand(t, [0], ids, value=vals, cap=2, mode="vm")
  # rank by V: line 2 (0.9), line 3 (0.5), line 1 (0.2, hidden although most frequent)
  assert _np(t.line_id[0, 1:4]).tolist() == [2, 3, 1]
  assert _np(t.visible[0, 1:4]).tolist() == [True, True, False]
  # new child N = 1, W = v; each duplicate N += 1, W += V(child): line 1 -> N 3, W 0.6
  assert _np(t.visits[0, 1:4]).tolist() == [1, 1, 3]
  np.testing.assert_allclose(_np(t.value_sum[0, 1:4]), [0.9, 0.5, 0.6], rtol=1e-6)
  np.testing.assert_allclose(_np(values(t)[0, 1:4]), [0.9, 0.5, 0.2], rtol=1e-6)
  assert _np(info.sample_node[0]).tolist() == [3, 1, 3, 2, 3]
  # VM backup: n' = sum N(c) = 5 and w' = sum W(c) = 2.0 over ALL children, hidden included
  t = backup_from_children(t, jnp.array([0]))
  assert int(t.visits[0, 0]) == 5
  np.testing.assert_allclose(float(t.value_sum[0, 0]), 2.0, rtol=1e-6)


def test_vm_backup_from_children_reaches_ancestors_only():
  t = init_tree(1, 16, 3)
  t, _ = _expand(t, [0], [[1, 2, 3]], value=[[0.5, 0.4, 0.1]], cap=3, mode="vm")
  t = backup_from_children(t, jnp.array([0]))  # root: N 3, W 1.0
  t, _ = _expand(t, [1], [[4, 4, 5]], value=[[0.25, 0.0, 1.0]], cap=3, mode="vm")
  t = backup_from_children(t, jnp.array([1]))  # n' = 3, w' = 0.5 + 1.0
  # node 4 = line 5 (V 1.0) ranks before node 5 = line 4 (N 2, W 0.5)
  assert _np(t.line_id[0, 4:6]).tolist() == [5, 4]
  assert _np(t.visits[0, :6]).tolist() == [6, 4, 1, 1, 1, 2]
  np.testing.assert_allclose(_np(t.value_sum[0, :6]), [2.5, 2.0, 0.4, 0.1, 1.0, 0.5], rtol=1e-6)


def test_rows_skipped_invalid_samples_and_budget():
  t = init_tree(3, 16, 4)
  ids = [[1, 2, 3, 4]] * 3
  valid = [[True] * 4, [False] * 4, [False, True, False, True]]
  t, info = _expand(t, [NO_NODE, 0, 0], ids, valid=valid, cap=4)
  assert _np(t.num_nodes).tolist() == [1, 1, 3]
  assert _np(t.expanded[:, 0]).tolist() == [False, False, True]  # no child -> not expanded
  assert _np(info.sample_node).tolist() == [[-1] * 4, [-1] * 4, [-1, 1, -1, 2]]
  assert _np(t.line_id[2, 1:3]).tolist() == [2, 4]
  assert _np(sample_budget(t)).tolist() == [0, 4, 4]  # a drawn sample costs budget, valid or not
  assert _np(t.num_expansions).tolist() == [0, 1, 1]


def test_expanded_or_terminal_parent_is_not_expanded_again():
  t = init_tree(1, 16, 3)
  t, _ = _expand(t, [0], [[1, 1, 2]], term=[[True, True, False]], cap=3)
  before = t
  t, info = _expand(t, [0], [[5, 6, 7]], cap=3)  # root already expanded
  t, info2 = _expand(t, [1], [[5, 6, 7]], cap=3)  # node 1 is terminal
  assert bool(before.terminal[0, 1]) and not bool(before.terminal[0, 2])
  for name in ("children", "line_id", "num_nodes", "expanded", "visits"):
    np.testing.assert_array_equal(_np(getattr(t, name)), _np(getattr(before, name)), err_msg=name)
  assert (_np(info.sample_node) == -1).all() and (_np(info2.sample_node) == -1).all()
  assert int(sample_budget(t)[0]) == 9


def test_capacity_overflow_drops_lowest_ranked_and_keeps_tree_consistent():
  t = init_tree(2, 4, 4)
  t, _ = _expand(t, [0, 0], [[1, 2, 1, 1]] * 2, cap=2)  # nodes 1 (line 1), 2 (line 2)
  # tree 0: 3 distinct lines under node 1, room for 1 -> only the most frequent (line 9) is kept
  t, info = _expand(t, [1, 2], [[8, 9, 9, 7], [5, 5, 5, 5]], cap=2)
  assert _np(t.num_nodes).tolist() == [4, 4]
  assert _np(t.children[0, 1]).tolist() == [3, -1, -1, -1] and int(t.line_id[0, 3]) == 9
  assert _np(info.sample_node[0]).tolist() == [-1, 3, 3, -1]
  assert _np(info.dropped).tolist() == [2, 0] and _np(t.overflow).tolist() == [True, False]
  assert int(t.num_children[0, 1]) == 1 and bool(t.expanded[0, 1])
  # full tree: a further expansion stores nothing, the node stays unexpanded, nothing is corrupted
  before = t
  t, info = _expand(t, [2, 3], [[4, 4, 4, 4]] * 2, cap=2)
  assert _np(t.overflow).tolist() == [True, True] and _np(info.num_new).tolist() == [0, 0]
  assert not bool(t.expanded[0, 2])
  np.testing.assert_array_equal(_np(t.parent), _np(before.parent))
  np.testing.assert_array_equal(_np(t.children), _np(before.children))
  used = _np(t.parent[:, 1:])  # every stored node hangs under a stored node
  assert (used >= 0).all() and (used < _np(t.num_nodes)[:, None]).all()


def test_backup_adds_to_node_and_ancestors_only():
  t = init_tree(2, 16, 3)
  t, _ = _expand(t, [0, 0], [[1, 2, 3]] * 2, cap=3)
  t, _ = _expand(t, [1, 2], [[4, 5, 6]] * 2, cap=3)  # nodes 4..6 under node 1 (tree 0) / 2 (tree 1)
  t = backup(t, jnp.array([5, NO_NODE]), jnp.array([5, 5]), jnp.array([2.5, 9.0]))
  t = backup(t, jnp.array([2, 6]), jnp.array([1, 2]), jnp.array([0.25, 1.5]))
  assert _np(t.visits[0, :7]).tolist() == [6, 5, 1, 0, 0, 5, 0]
  np.testing.assert_allclose(_np(t.value_sum[0, :7]), [2.75, 2.5, 0.25, 0, 0, 2.5, 0])
  assert _np(t.visits[1, :7]).tolist() == [2, 0, 2, 0, 0, 0, 2]
  np.testing.assert_allclose(_np(t.value_sum[1, :7]), [1.5, 0, 1.5, 0, 0, 0, 1.5])


def test_reuse_terminal_value_backs_up_cached_value():
  t = init_tree(3, 8, 2)
  t, _ = _expand(t, [0, 0, 0], [[1, 2]] * 3, term=[[True, False]] * 3, cap=2)
  t = backup(t, jnp.array([1, NO_NODE, 2]), jnp.array([2, 0, 2]), jnp.array([1.0, 0.0, 1.0]))
  t, reused = reuse_terminal_value(t, jnp.array([1, 1, 2]))  # cached / first visit / not terminal
  assert _np(reused).tolist() == [True, False, False]
  assert _np(t.visits[:, :3]).tolist() == [[3, 3, 0], [0, 0, 0], [2, 0, 2]]
  np.testing.assert_allclose(_np(t.value_sum[0, :3]), [1.5, 1.5, 0.0])


def test_path_rebuilds_root_to_node_lines():
  t = init_tree(2, 16, 2, root_line_id=100)
  t, _ = _expand(t, [0, 0], [[10, 11]] * 2, cap=2)
  t, _ = _expand(t, [2, 1], [[20, 21]] * 2, cap=2)
  t, _ = _expand(t, [4, 3], [[30, 30]] * 2, cap=2)
  p = path(t, jnp.array([5, NO_NODE]))
  assert _np(p.nodes[0, :5]).tolist() == [0, 2, 4, 5, -1]
  assert _np(p.line_ids[0, :5]).tolist() == [100, 11, 21, 30, -1]
  assert _np(p.length).tolist() == [4, 0] and (_np(p.nodes[1]) == -1).all()
  short = path(t, jnp.array([5, 3]), max_depth=2)
  assert _np(short.nodes).tolist() == [[0, 2], [0, 1]] and _np(short.length).tolist() == [4, 3]


def test_value_targets_are_expanded_nodes_with_their_means():
  t = init_tree(1, 16, 3)
  t, _ = _expand(t, [0], [[1, 2, 3]], term=[[False, True, False]], cap=3)
  t = backup(t, jnp.array([0]), 3, 1.5)
  t, _ = _expand(t, [1], [[4, 5, 6]], cap=3)
  t = backup(t, jnp.array([1]), 3, 0.75)
  t = backup(t, jnp.array([2]), 1, 1.0)  # terminal node: visited, never a value target
  tv = value_targets(t)
  assert np.flatnonzero(_np(tv.mask[0])).tolist() == [0, 1]
  nodes, vals = value_target_lists(t)[0]
  assert nodes.tolist() == [0, 1]
  np.testing.assert_allclose(vals, [3.25 / 7, 0.25], rtol=1e-6)


def test_budget_helpers():
  t = init_tree(2, 32, 5)
  for parent in ([0, 0], [1, NO_NODE], [2, 1]):
    t, _ = _expand(t, parent, [[1, 2, 3, 4, 5]] * 2, cap=3)
  assert _np(sample_budget(t)).tolist() == [15, 10]
  assert capacity_for(15, 5) == 76
  assert expansions_for_budget(100, 5) == 20 and expansions_for_budget(74, 5) == 14
  with pytest.raises(ValueError, match="num_sample"):
    expansions_for_budget(10, 0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="best"), "mode"),
    (dict(width_cap=0), "width_cap"),
    (dict(line_ids=np.zeros((2, 3), np.int32)), "line_ids"),
    (dict(line_ids=np.zeros((1, 6), np.int32), is_terminal=np.zeros((1, 6), bool),
          valid=np.ones((1, 6), bool)), "exceed the tree width"),
    (dict(valid=np.ones((1, 2), bool)), "valid"),
    (dict(mode="vm"), "init_value"),
    (dict(init_value=np.zeros((1, 3), np.float32)), "only used in mode='vm'"),
    (dict(parent=np.zeros((2,), np.int32)), "parent"),
])
def test_add_children_rejects_bad_input(kwargs, match):
  args = dict(tree=init_tree(1, 8, 5), parent=np.zeros((1,), np.int32),
              line_ids=np.zeros((1, 3), np.int32), is_terminal=np.zeros((1, 3), bool),
              valid=np.ones((1, 3), bool), init_value=None, width_cap=2, mode="collect")
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    add_children(**args)
