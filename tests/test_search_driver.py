"""MCTS drivers (restrl_jax.search.driver / collect / decode) on a tiny random policy.

The policy is a random tiny model whose embeddings share a common direction that the newline
tokens' output rows point to, so it writes multi-line garbage (a multi-level tree). Execution is
replaced by a deterministic stand-in pool (reward = 4 hash bits of the program), and the value
model by a hash of its input text, so every number below can be recomputed independently.
"""
import concurrent.futures as cf
import dataclasses
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flat_init import flat_init_params  # tests/ is on sys.path under pytest

from restrl_jax.data.prompts import value_model_input
from restrl_jax.data.synthetic import load_synthetic
from restrl_jax.execution.spec import ExecResult
from restrl_jax.sampling import Buckets, Sampler, SamplingParams
from restrl_jax.search import answer_selection
from restrl_jax.search.collect import collect_config, collect_values
from restrl_jax.search.driver import SearchConfig, best_program, run_search
from restrl_jax.search.lines import LineTable, action_of
from restrl_jax.tokenizer import embedded_tokenizer
from restrl_jax.warmstart.train import policy_config

N, ITERS, WIDTH = 3, 6, 2
SP = SamplingParams(max_new_tokens=24, temperature=1.0)


def hash_reward(program: str) -> float:
  h = zlib.crc32(program.encode())
  return sum((h >> k) & 1 for k in range(4)) / 4.0


class HashPool:
  """Stand-in sandbox: reward = share of 4 hash bits set; remembers what it ran."""

  def __init__(self):
    self.ran = []

  def submit(self, programs, suites):
    self.ran += list(programs)
    f = cf.Future()
    f.set_result([ExecResult(tuple("pass" if (zlib.crc32(p.encode()) >> k) & 1 else "fail"
                                   for k in range(4)), "none") for p in programs])
    return f


def hash_score(problem, state: str) -> float:
  return zlib.crc32(value_model_input(problem.prompt, state).encode()) / 2.0**32


def hash_scorer(problems, states):
  return np.array([hash_score(p, s) for p, s in zip(problems, states)], np.float32)


def newline_policy(tok):
  cfg = policy_config(tok)
  params = flat_init_params(cfg, jax.random.key(0))  # the draws the search tests were built on
  u = jax.random.normal(jax.random.key(7), (cfg.hidden_size,))
  u = u / jnp.linalg.norm(u)
  nl = np.array([i for i in range(len(tok)) if "\n" in tok.decode([i])])
  params["embed"] = {"embedding": params["embed"]["embedding"] + 0.3 * u}
  params["lm_head"] = {"kernel": params["lm_head"]["kernel"].at[:, nl].add(
      0.1 * np.sqrt(cfg.hidden_size) * u[:, None])}
  return cfg, params


@pytest.fixture(scope="module")
def setup():
  tok = embedded_tokenizer()
  cfg, params = newline_policy(tok)
  # one prompt-length and batch bucket: a single compiled sampler serves every test
  sampler = Sampler(cfg, params, tok, max_batch=16, buckets=Buckets(min_prompt=256, min_batch=16))
  return sampler, load_synthetic("train", 4)


def test_action_and_line_table():
  assert action_of("x = 1\ny = 2\n\n") == ("x = 1\n", False)
  assert action_of("print(x)  \n") == ("print(x)\n", True)
  table = LineTable()
  a, b = table.intern(action_of("x = 1")), table.intern(action_of("x = 1\nprint(x)"))
  assert a != b and table.intern(action_of("x = 1  ")) == a and table.is_terminal(a)
  assert table.state("def f():\n", np.array([-1, b, a]), 3) == "def f():\nx = 1\nx = 1\n"


def _recomputed_node_stats(records):
  """(N, W) of every expanded node from the records alone: n samples and their executed rewards
  at each expanded node of its subtree, plus visits x value of each terminal node visited."""
  parent = {r["node"]: r["parent"] for r in records if r["kind"] in ("node", "terminal")}
  stats = {r["node"]: [0, 0.0] for r in records if r["kind"] == "node"}

  def add(node, count, value):
    while node >= 0:
      stats[node][0] += count
      stats[node][1] += value
      node = parent[node]

  for r in records:
    if r["kind"] == "program":
      add(r["node"], 1, r["value"])
    elif r["kind"] == "terminal":
      add(r["parent"], r["visits"], r["visits"] * r["value"])
  return stats


def test_collection_records_are_subtree_means_of_executed_rewards(setup):
  sampler, problems = setup
  pool = HashPool()
  cfg = collect_config(iterations=ITERS, num_samples=N, width=WIDTH, seed=1)
  records, result = collect_values(problems, sampler, pool, SP, cfg)
  programs = [r for r in records if r["kind"] == "program"]
  # every sampled program is a record with its own executed reward, executed exactly once
  assert len(programs) == N * int(result.tree.num_expansions.sum()) == len(pool.ran)
  assert all(r["value"] == hash_reward(r["state"]) for r in programs)
  assert sorted(pool.ran) == sorted(r["state"] for r in programs)
  reused = 0
  for b, p in enumerate(problems):
    mine = [r for r in records if r["problem_id"] == p.id]
    nodes = {r["node"]: r for r in mine if r["kind"] == "node"}
    assert nodes[0]["state"] == p.starter_code and nodes[0]["parent"] == -1
    stats = _recomputed_node_stats(mine)
    for node, (count, wsum) in stats.items():
      assert nodes[node]["visits"] == count
      assert nodes[node]["value"] == pytest.approx(wsum / count, abs=1e-5)
    for r in mine:
      if r["kind"] == "node" and r["parent"] >= 0:
        assert r["state"].startswith(nodes[r["parent"]]["state"])
        assert r["state"].count("\n") == nodes[r["parent"]]["state"].count("\n") + 1
      if r["kind"] == "terminal":  # re-used the executed reward of the identical sample
        executed = {q["state"] for q in programs
                    if q["problem_id"] == p.id and q["state"].rstrip() == r["state"].rstrip()}
        assert r["value"] in {hash_reward(q) for q in executed}, (r["state"], executed)
        reused += r["visits"] >= 2
  assert reused > 0, "no terminal node was re-visited; grow the search"
  assert result.steps == ITERS  # collection counts loop steps, terminal visits included


def _vm_invariants(result, b):
  """VM-MCTS: N(s) = c_s + sum N(children), W(s) = c_s * VM(s) + sum W(children)."""
  t, p = result.tree, result.problems[b]
  for node in result.expanded_states[b]:
    kids = [k for k in t.children[b, node] if k >= 0]
    own_n = t.visits[b, node] - sum(t.visits[b, k] for k in kids)
    own_w = t.value_sum[b, node] - sum(t.value_sum[b, k] for k in kids)
    c = 0 if node == 0 else t.sample_count[b, node]
    assert own_n == c
    expect = 0.0 if node == 0 else c * hash_score(p, result.node_state(b, node))
    assert own_w == pytest.approx(expect, abs=1e-4)


def test_vm_mcts_answer_is_best_scored_program_at_exact_budget(setup):
  sampler, problems = setup
  budget = ITERS * N
  cfg = answer_selection.decode_config("vm_mcts", budget, num_samples=N, width=WIDTH, seed=2)
  answers, result = answer_selection.mcts_decode(problems, sampler, hash_scorer, SP, cfg)
  assert list(result.tree.num_samples) == [budget] * len(problems)
  for b, (p, a) in enumerate(zip(problems, answers)):
    progs = result.programs[b]
    assert a.num_samples == len(progs) == budget
    scores = [hash_score(p, s.program) for s in progs]
    assert [s.score for s in progs] == pytest.approx(scores, abs=1e-6)
    assert a.program == progs[int(np.argmax(scores))].program
    assert a.score == pytest.approx(max(scores), abs=1e-6)
    _vm_invariants(result, b)


def test_baselines_spend_the_same_budget(setup):
  sampler, problems = setup
  budget = ITERS * N
  plain = answer_selection.decode("sampling", problems, sampler, SP, budget, seed=3)
  bon = answer_selection.decode("best_of_n", problems, sampler, SP, budget, hash_scorer, seed=3)
  orm = answer_selection.decode("orm_mcts", problems, sampler, SP, budget, hash_scorer,
                                num_samples=N, width=WIDTH, seed=3)
  for p, a, b, o in zip(problems, plain, bon, orm):
    assert a.num_samples == b.num_samples == o.num_samples == budget == len(a.candidates)
    # best-of-N scores the very samples the sampling baseline drew (same seed and ids)
    scores = [hash_score(p, s) for s in a.candidates]
    assert b.program == a.candidates[int(np.argmax(scores))]
    assert a.program == a.candidates[0]
  pool = HashPool()
  rewards = answer_selection.execute_answers(pool, problems, plain)
  m = answer_selection.answer_metrics(plain, rewards)
  assert m["test_case_average"] == pytest.approx(
      np.mean([np.mean([hash_reward(s) for s in a.candidates]) for a in plain]))
  assert m["samples_per_problem"] == budget


def test_orm_mcts_backs_up_outcome_scores(setup):
  sampler, problems = setup
  cfg = SearchConfig(iterations=ITERS, num_samples=N, width=WIDTH, c=0.1, mode="orm",
                     count="expansions", seed=4)
  result = run_search(problems, sampler, SP, cfg, scorer=hash_scorer)
  for b, p in enumerate(problems):
    t = result.tree
    scores = sum(hash_score(p, s.program) for s in result.programs[b])
    terminal_visits = [(k, t.visits[b, k]) for k in range(int(t.num_nodes[b]))
                       if t.terminal[b, k] and t.visits[b, k] > 0]
    extra = sum(v * t.value_sum[b, k] / v for k, v in terminal_visits)
    assert t.visits[b, 0] == N * ITERS + sum(v for _, v in terminal_visits)
    assert t.value_sum[b, 0] == pytest.approx(scores + extra, abs=1e-4)


@pytest.mark.parametrize("mode", ["vm", "collect"])
def test_batched_search_matches_each_tree_alone(setup, mode):
  sampler, problems = setup
  cfg = SearchConfig(iterations=ITERS, num_samples=N, width=WIDTH, c=0.1, mode=mode,
                     count="expansions" if mode == "vm" else "iterations", seed=5)
  kw = dict(scorer=hash_scorer) if mode == "vm" else dict(pool=HashPool())
  together = run_search(problems, sampler, SP, cfg, **kw)
  for b in (range(len(problems)) if mode == "vm" else [2]):
    p = problems[b]
    alone = run_search([p], sampler, SP, cfg, tree_ids=[b], **kw)
    assert [s.program for s in alone.programs[0]] == [s.program for s in together.programs[b]]
    assert alone.tree.visits[0].tolist() == together.tree.visits[b].tolist()
    if mode == "vm":
      assert best_program(alone, 0).program == best_program(together, b).program


@pytest.mark.parametrize("mode", ["vm", "collect"])
def test_prefix_cache_leaves_the_search_unchanged(setup, mode):
  sampler, problems = setup
  cfg = SearchConfig(iterations=ITERS, num_samples=N, width=WIDTH, c=0.1, mode=mode,
                     count="expansions", seed=6)
  kw = dict(scorer=hash_scorer) if mode == "vm" else dict(pool=HashPool())
  kept = sampler.stats["prefix_tokens_kept"]
  cached = run_search(problems, sampler, SP, cfg, **kw)
  assert sampler.stats["prefix_tokens_kept"] - kept >= ITERS * N * len(problems) * 50
  kept = sampler.stats["prefix_tokens_kept"]
  plain = run_search(problems, sampler, SP, dataclasses.replace(cfg, prefix_cache=False), **kw)
  assert sampler.stats["prefix_tokens_kept"] == kept
  for b in range(len(problems)):
    assert [s.program for s in cached.programs[b]] == [s.program for s in plain.programs[b]]
    assert cached.tree.visits[b].tolist() == plain.tree.visits[b].tolist()
    np.testing.assert_allclose(cached.tree.value_sum[b], plain.tree.value_sum[b], atol=1e-6)


def test_bad_inputs_are_named(setup):
  sampler, problems = setup
  with pytest.raises(ValueError, match="mode"):
    SearchConfig(mode="greedy")
  with pytest.raises(ValueError, match="needs a pool"):
    run_search(problems, sampler, SP, SearchConfig(iterations=1))
  with pytest.raises(ValueError, match="scorer"):
    run_search(problems, sampler, SP, SearchConfig(iterations=1, mode="vm"))
  with pytest.raises(ValueError, match="budget"):
    answer_selection.decode_config("vm_mcts", budget=2, num_samples=5)
