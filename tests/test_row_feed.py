"""Row feeds (sampling/row_feed.py): which rows each process feeds, on fake multi-process device
grids, the HostRowFeed on this process's 8 devices, and what RowFeed and HostRowFeed share."""
import types
from typing import NamedTuple

import jax
import numpy as np
import pytest

from restrl_jax import parallel
from restrl_jax.sampling import row_feed
from restrl_jax.sampling.row_feed import HostRowFeed, RowFeed, batch_shard_owners, host_rows


class FakeDevice(NamedTuple):
  id: int
  process_index: int


def grid(shape, processes, order=None):
  """Devices listed process by process (like jax.devices()), reshaped to a mesh [d, f, t]."""
  n = int(np.prod(shape))
  per = n // processes
  devices = [FakeDevice(i, i // per) for i in range(n)]
  if order is not None:
    devices = [devices[i] for i in order]
  out = np.empty(n, dtype=object)
  out[:] = devices
  return out.reshape(shape)


def owned(shape, processes, total, group_size=1, order=None):
  owners = batch_shard_owners(grid(shape, processes, order))
  return [host_rows(owners, total, p, group_size).blocks for p in range(processes)]


def test_owners_follow_data_then_fsdp():
  assert batch_shard_owners(grid((1, 8, 1), 2)) == tuple(frozenset({i // 4}) for i in range(8))
  # (2, 2, 2): shard = data * 2 + fsdp; the tensor pair sits inside one process
  assert batch_shard_owners(grid((2, 2, 2), 4)) == tuple(frozenset({s}) for s in range(4))
  assert batch_shard_owners(grid((1, 1, 8), 2)) == (frozenset({0, 1}),)  # tensor across hosts
  with pytest.raises(ValueError, match=r"\[data, fsdp, tensor\] grid"):
    batch_shard_owners(np.empty((2, 4), object))


@pytest.mark.parametrize("shape,processes,total,expected", [
    ((1, 8, 1), 1, 16, [((0, 16),)]),
    ((1, 8, 1), 2, 16, [((0, 8),), ((8, 16),)]),
    ((8, 1, 1), 4, 16, [((0, 4),), ((4, 8),), ((8, 12),), ((12, 16),)]),
    ((2, 2, 2), 2, 8, [((0, 4),), ((4, 8),)]),
    ((1, 4, 2), 4, 8, [((0, 2),), ((2, 4),), ((4, 6),), ((6, 8),)]),
    ((1, 2, 4), 2, 8, [((0, 4),), ((4, 8),)]),
    ((1, 1, 8), 2, 8, [((0, 8),), ((0, 8),)]),          # batch not split: every host has all
    ((1, 2, 4), 4, 8, [((0, 4),), ((0, 4),), ((4, 8),), ((4, 8),)]),  # pairs of replicas
])
def test_rows_per_process(shape, processes, total, expected):
  assert owned(shape, processes, total) == expected


def test_rows_partition_the_batch_in_any_device_order():
  rng = np.random.default_rng(0)
  for shape in ((1, 8, 1), (2, 4, 1), (4, 2, 1)):
    order = rng.permutation(8)
    owners = batch_shard_owners(grid(shape, 2, order))
    rows = [host_rows(owners, 32, p) for p in range(2)]
    assert sorted(np.concatenate([r.indices for r in rows]).tolist()) == list(range(32))
    assert rows[0].size == rows[1].size == 16
    for r in rows:  # blocks are sorted, disjoint and merged
      assert all(a < b for a, b in r.blocks)
      assert all(b1 < a2 for (_, b1), (a2, _) in zip(r.blocks, r.blocks[1:]))


def test_interleaved_devices_give_several_blocks():
  order = [0, 4, 1, 5, 2, 6, 3, 7]          # processes alternate along fsdp
  assert owned((1, 8, 1), 2, 16, order=order) == [
      ((0, 2), (4, 6), (8, 10), (12, 14)), ((2, 4), (6, 8), (10, 12), (14, 16))]
  assert owned((1, 8, 1), 2, 16, group_size=2, order=order)[1][0] == (2, 4)
  with pytest.raises(ValueError, match=r"group_size=4 rows would be split .* process 0"):
    owned((1, 8, 1), 2, 16, group_size=4, order=order)


def test_groups_stay_whole():
  owners = batch_shard_owners(grid((1, 8, 1), 2))
  rows = host_rows(owners, 16, 1, group_size=4)     # B=4 prompts, G=4: two groups a host
  assert rows.groups(4).tolist() == [2, 3]
  assert rows.take(list("abcdefghijklmnop")) == list("ijklmnop")
  # B=2, G=4 on four hosts: a host would hold half a group
  with pytest.raises(ValueError, match=r"group_size=4 rows would be split.*process 0 feeds rows "
                                       r"\[\(0, 2\)\].*multiple of the number of processes \(4\)"):
    host_rows(batch_shard_owners(grid((1, 8, 1), 4)), 8, 0, group_size=4)
  # one host holding every row keeps every group whole
  assert host_rows(batch_shard_owners(grid((1, 1, 8), 2)), 8, 1, group_size=8).blocks == (
      (0, 8),)


def test_batch_that_does_not_divide_is_named():
  owners = batch_shard_owners(grid((1, 8, 1), 2))
  with pytest.raises(ValueError, match="batch of 12 rows does not split over the mesh's 8 batch "
                                       r"shards \(data \* fsdp\)"):
    host_rows(owners, 12, 0)
  with pytest.raises(ValueError, match="process 5 owns no device"):
    host_rows(owners, 16, 5)
  with pytest.raises(ValueError, match="take: 3 items for a batch of 16 rows"):
    host_rows(owners, 16, 0).take([1, 2, 3])


def test_feed_geometry_and_errors():
  feed = HostRowFeed(types.SimpleNamespace(devices=grid((2, 2, 2), 2)), process_index=1)
  assert (feed.num_processes, feed.shards_per_process, feed.local_multiple(None)) == (2, 2, 2)
  assert feed.global_rows(6) == 12
  assert feed.row_ids(6).tolist() == list(range(6, 12))
  assert feed.rows(8, 4, process_index=0).blocks == ((0, 4),)
  with pytest.raises(ValueError, match="3 local rows do not split over this process's 2"):
    feed.global_rows(3)
  lopsided = grid((1, 4, 1), 1)
  lopsided[0, 3, 0] = FakeDevice(3, 1)       # process 0 holds 3 shards, process 1 one
  with pytest.raises(ValueError, match=r"unequal numbers of batch shards \{0: 3, 1: 1\}"):
    HostRowFeed(types.SimpleNamespace(devices=lopsided), process_index=0)


def test_rows_from_shards():
  full = np.arange(16 * 3).reshape(16, 3)
  shards = [((slice(a, a + 4), slice(None)), full[a:a + 4]) for a in (4, 12)]   # two blocks
  want = np.array([4, 5, 6, 7, 12, 13, 14, 15])
  np.testing.assert_array_equal(row_feed.rows_from_shards(shards, full.shape, want), full[want])
  replicated = [((slice(None), slice(None)), full)] * 2
  np.testing.assert_array_equal(row_feed.rows_from_shards(replicated, full.shape, want),
                                full[want])
  with pytest.raises(ValueError, match=r"rows \[0\] of an array \(16, 3\) are not on this"):
    row_feed.rows_from_shards(shards, full.shape, np.array([0, 4]))
  with pytest.raises(ValueError, match="split beyond its batch axis"):
    row_feed.rows_from_shards([((slice(0, 4), slice(0, 2)), full[:4, :2])], full.shape, want)


def test_feed_on_one_process_is_the_plain_path():
  mesh = parallel.make_mesh((2, 2, 2))
  feed, plain = HostRowFeed(mesh), RowFeed()
  x = np.arange(8 * 5, dtype=np.float32).reshape(8, 5)
  placed = feed.put(x, mesh)
  assert placed.shape == (8, 5) and placed.sharding.is_equivalent_to(
      plain.put(x, mesh).sharding, 2)
  np.testing.assert_array_equal(feed.get(placed), x)
  assert feed.row_ids(8).tolist() == list(range(8)) == plain.row_ids(8).tolist()
  assert feed.agree_max(3) == 3 and feed.agree_all(True) and not feed.agree_all(False)
  assert feed.gather_rows(["a", "b", "c", "d"], 4) == ["a", "b", "c", "d"]
  assert feed.gather_objects({"k": 1}) == [{"k": 1}]
  assert jax.process_count() == 1




# -- a process's rows and the gathers, on process 1 of a fake two-process mesh ---------------

class TwoHostFeed(HostRowFeed):
  """Process 1 of a fake 2 x 4-device mesh; `gather_objects` returns canned per-process parts."""

  def __init__(self, part0=None):
    super().__init__(types.SimpleNamespace(devices=grid((1, 8, 1), 2)), process_index=1)
    self.part0 = part0             # what process 0 sends

  def gather_objects(self, obj):
    return [self.part0, obj]

  def agree_max(self, x):
    return x


def test_a_feed_holding_every_row_selects_all_and_gathers_nothing():
  feed = RowFeed()
  assert feed.groups(8, 2).tolist() == [0, 1, 2, 3]
  assert feed.chunk_positions(5).tolist() == [0, 1, 2, 3, 4]
  assert feed.gather_rows(["a", "b"], 2) == ["a", "b"]
  assert feed.gather_filled(["a", None]) == ["a", None]
  assert row_feed.for_processes(None).rows_are_global      # one process here


def test_a_host_feed_selects_its_rows_and_gathers_every_process_s():
  feed = TwoHostFeed([(0, "r0"), (1, "r1")])               # process 1 of 2; 8 batch shards
  assert feed.groups(16, 2).tolist() == [4, 5, 6, 7]
  assert feed.chunk_positions(5).tolist() == [4, 5, 6, 7]  # 5 rows padded to 8: 5..7 are padding
  with pytest.raises(ValueError, match=r"no process returned entries \[3\]"):
    feed.gather_filled([None, None, "m2", None])
  assert feed.gather_filled([None, None, "m2", "m3"]) == ["r0", "r1", "m2", "m3"]
  feed.part0 = list("abcdefgh")
  assert feed.gather_rows(list("ijklmnop"), 16) == list("abcdefghijklmnop")
  feed.part0 = ["a", "b"]
  with pytest.raises(ValueError, match="process 0 sent 2 rows, expected 8"):
    feed.gather_rows(list("ijklmnop"), 16)


# -- GRPO steps on per-host rows: checks, the trainer's selection and gather ---------------------

def grpo_config(**cfg):
  from restrl_jax.rl.trainer import GRPOConfig
  return GRPOConfig(**dict(dict(group_size=2, prompts_per_step=4, beta_kl=0.0), **cfg))


def test_a_step_on_per_host_rows_refuses_what_it_cannot_do():
  from restrl_jax.rl.trainer import check_rows_per_host
  feed, mesh = TwoHostFeed(), TwoHostFeed().mesh
  check_rows_per_host(grpo_config(), mesh, feed)
  with pytest.raises(ValueError, match="dynamic_sampling"):
    check_rows_per_host(grpo_config(dynamic_sampling=True), mesh, feed)
  with pytest.raises(ValueError, match="kl_in_loss=False"):
    check_rows_per_host(grpo_config(beta_kl=0.1, kl_in_loss=False), mesh, feed)
  with pytest.raises(ValueError, match="need the trainer's mesh"):
    check_rows_per_host(grpo_config(), None, feed)
  with pytest.raises(ValueError, match=r"group_size=8 rows would be split .* process 0"):
    check_rows_per_host(grpo_config(group_size=8, prompts_per_step=1), mesh, feed)


def rollouts(rows, reward):
  from restrl_jax.rl.trainer import Rollouts
  n = len(rows)
  return Rollouts(requests=(), prompts=tuple([r] for r in rows),
                  completions=tuple([r] * (r % 3 + 1) for r in rows),
                  logps=tuple(np.full(r % 3 + 1, -r, np.float32) for r in rows),
                  texts=tuple(f"t{r}" for r in rows), programs=tuple(f"p{r}" for r in rows),
                  bonus=np.full(n, 1e-3), closed=np.ones(n, bool), finish=np.zeros(n, np.int32),
                  exec_reward=np.asarray(reward, np.float64))


def test_the_trainer_takes_its_groups_and_gathers_every_host_s_rows():
  from restrl_jax.rl.trainer import ROW_FIELDS, gather_rollouts, rollout_metrics
  from restrl_jax.rl.trainer import whole_batch_metrics
  reward = np.array([0, 1, 1, 1, 0, 0, 1, 0], np.float64)        # [B*G], B=4 groups of G=2
  part0 = list(zip(*(getattr(rollouts(range(4), reward[:4]), f) for f in ROW_FIELDS)))
  feed = TwoHostFeed(part0)
  requests = [f"r{i}" for i in range(4)]
  assert [requests[i] for i in feed.groups(8, 2)] == ["r2", "r3"]  # process 1: groups 2 and 3
  with pytest.raises(ValueError, match="6 rows does not split over the mesh's 8 batch shards"):
    feed.groups(6, 2)
  full = gather_rollouts(feed, requests, rollouts(range(4, 8), reward[4:]), 2)
  assert full.requests == tuple(requests) and full.texts == tuple(f"t{r}" for r in range(8))
  np.testing.assert_array_equal(full.exec_reward, reward)
  assert full.exec_reward.dtype == np.float64 and full.closed.dtype == bool
  assert [len(c) for c in full.completions] == [r % 3 + 1 for r in range(8)]
  metrics = whole_batch_metrics(feed, grpo_config(), {"loss": 0.5, "step_s": 2.0}, full)
  expected = rollout_metrics(rollouts(range(8), reward), np.ones(8, bool), 2, np.zeros(8))
  assert metrics["loss"] == 0.5
  for k, v in expected.items():
    assert metrics[k] == pytest.approx(v), k
  assert metrics["exec_reward_mean"] == 0.5 and metrics["frac_exec_zero_std"] == 0.5
  assert metrics["tokens_per_s"] == pytest.approx(sum(r % 3 + 1 for r in range(8)) / 2.0)


def test_feed_for_a_process_off_the_mesh_is_refused():
  with pytest.raises(ValueError, match="process 3 owns no device"):
    HostRowFeed(types.SimpleNamespace(devices=grid((1, 8, 1), 2)), process_index=3)
