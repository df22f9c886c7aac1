"""DAPO dynamic sampling with static shapes (restrl_jax/rl/dynamic_sampling.py)."""
import numpy as np
import pytest

from restrl_jax.rl import dynamic_sampling as ds

CHUNK0 = np.array([[1, 1, 1], [0, 1, 0], [0, 0, 0], [1, 0, 1]], np.float32)   # keeps rows 1, 3
CHUNK1 = np.array([[0.5, 0.5, 0.5], [0.2, 0.2, 0.9], [1, 0, 0]], np.float32)  # keeps rows 1, 2


def test_informative_groups_and_threshold():
  np.testing.assert_array_equal(ds.informative_groups(CHUNK0), [False, True, False, True])
  near_flat = np.array([[0.5, 0.5, 0.500001], [0.0, 1.0, 1.0]])
  np.testing.assert_array_equal(ds.informative_groups(near_flat), [True, True])
  np.testing.assert_array_equal(ds.informative_groups(near_flat, min_std=1e-3), [False, True])


def test_refill_across_candidate_batches_until_full():
  sel = ds.add_candidates(ds.GroupSelection(3), CHUNK0)
  assert not sel.full and sel.kept == ((0, 1), (0, 3))
  sel = ds.add_candidates(sel, CHUNK1)
  assert sel.full and sel.kept == ((0, 1), (0, 3), (1, 1))          # (1, 2) not needed
  idx = ds.finalize(sel)
  np.testing.assert_array_equal(idx.batch, [0, 0, 1])
  np.testing.assert_array_equal(idx.row, [1, 3, 1])
  assert idx.valid.all()
  batch = ds.gather([CHUNK0, CHUNK1], idx)
  np.testing.assert_array_equal(batch, np.stack([CHUNK0[1], CHUNK0[3], CHUNK1[1]]))
  m = ds.selection_metrics(sel)
  assert m["dynamic_sampling/num_batches"] == 2.0
  assert m["dynamic_sampling/frac_dropped"] == pytest.approx(3 / 7)
  assert m["dynamic_sampling/frac_filled"] == 1.0


def test_running_out_pads_with_invalid_slots_of_fixed_shape():
  idx = ds.select_groups(CHUNK0, 4)
  assert idx.batch.shape == idx.row.shape == idx.valid.shape == (4,)
  np.testing.assert_array_equal(idx.row, [1, 3, 0, 0])
  np.testing.assert_array_equal(idx.valid, [True, True, False, False])
  np.testing.assert_array_equal(ds.completion_mask(idx.valid, 3), [1, 1, 1, 1, 1, 1] + [0] * 6)
  assert ds.gather([CHUNK0], idx).shape == (4, 3)
  none = ds.select_groups(np.zeros((2, 3)), 2)
  assert not none.valid.any()


def test_selection_is_immutable_and_inputs_checked():
  sel = ds.GroupSelection(2)
  ds.add_candidates(sel, CHUNK0)
  assert sel.kept == () and sel.num_batches == 0
  with pytest.raises(ValueError, match="num_groups"):
    ds.GroupSelection(0)
  with pytest.raises(ValueError, match="num_candidates, G"):
    ds.informative_groups(np.zeros(4))
