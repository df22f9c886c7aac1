"""The batched MCTS loop shared by value-target collection, VM-MCTS and ORM-MCTS (docs/method.md §5, §7).

B trees (one per problem) advance together. Each step:
  1. one jitted call: UCT `select` (one leaf per tree, each tree with its own key), `plan_leaves`
     and the leaves' root `path`s;
  2. host: leaf states = root state + lines on the path (`LineTable`);
  3. ONE `rollout` call samples n full completions for every expanding leaf (B*n rows), each
     continuing the leaf's `lines.sampling_state` (its state cut at a token end of the program
     that created it, kept when the child is added; the root: the starter code); it also
     executes them in the sandbox pool in "collect" mode (in "vm"/"orm" nothing is executed).
     With `prefix_cache` (default) each tree's prompt before its state is cached once per
     search (`Sampler.cache_prefixes`), and every expansion prefills only the state;
  4. host: each completion's first line -> action -> line id; in "vm"/"orm" mode ONE batched
     value-model call scores the programs (and, in "vm", the new children's states);
  5. one jitted call: `add_children`, terminal re-use and backup.
Modes:
  "collect"  rewards = executed rewards; backup (n, sum of rewards); a terminal leaf's first visit
             re-uses the executed reward of the sample that created it (same program).
  "vm"       V(child) = VM(child state); programs get VM verification scores; backup from the
             children's sums; answer = best-scored program.
  "orm"      the collection search with the VM used as an outcome scorer in place of execution.
Trees draw their randomness from (seed, step, tree id), not from their batch position, so a
batched search equals running each tree alone with the same `tree_ids` (see `rollout`).
`count="iterations"` runs exactly `iterations` loop steps (docs/method.md §5.2); `count="expansions"` runs
until each tree has made `iterations` expansions, i.e. sampled iterations x n programs (equal
budgets, docs/method.md §7), with at most `max_steps_factor * iterations` steps.
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import functools
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from restrl_jax.data.problem import Problem
from restrl_jax.data.prompts import build_prompt, state_token_ends
from restrl_jax.execution.spec import ExecResult
from restrl_jax.rollout import rollout
from restrl_jax.sampling import PrefixCache, SamplingParams
from restrl_jax.search import tree as tree_lib
from restrl_jax.search.lines import LineTable, action_of, continuation, sampling_state
from restrl_jax.search.select import path, plan_leaves, select
from restrl_jax.search.update import (add_children, backup, backup_from_children,
                                      reuse_terminal_value)

MODES = ("collect", "vm", "orm")
COUNTS = ("iterations", "expansions")
# (problems, states) -> scores in [0, 1], one per pair (e.g. ValueModel.scorer()).
StateScorer = Callable[[Sequence[Problem], Sequence[str]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class SearchConfig:
  iterations: int = 100       # loop steps, or expansions per tree (see `count`)
  num_samples: int = 5        # n: completions per expansion
  width: int = 3              # num_decision: visible children per node
  c: float = 0.2              # UCT exploration constant
  eps: float = 0.1            # UCT epsilon
  mode: str = "collect"
  count: str = "iterations"
  max_steps_factor: int = 4   # "expansions": safety cap on loop steps
  seed: int = 0
  prefix_cache: bool = True   # cache each tree's prompt once (same draws; a single-host feed)

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"SearchConfig.mode must be one of {MODES}, got {self.mode!r}")
    if self.count not in COUNTS:
      raise ValueError(f"SearchConfig.count must be one of {COUNTS}, got {self.count!r}")
    for name in ("iterations", "num_samples", "width", "max_steps_factor"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"SearchConfig.{name} must be >= 1, got {getattr(self, name)!r}")

  @property
  def max_steps(self) -> int:
    if self.count == "iterations":
      return self.iterations
    return self.max_steps_factor * self.iterations


@dataclasses.dataclass(frozen=True)
class SampledProgram:
  """One full program sampled during the search."""
  node: int                # the expanded node it was sampled from
  step: int                # loop step
  index: int               # sample index within the expansion
  program: str             # node state + extracted completion (what is executed / scored)
  score: float             # the search's reward: executed reward ("collect") or VM score
  reward: float | None     # executed reward ("collect" only)


@dataclasses.dataclass
class SearchResult:
  """What a finished batched search leaves (host side)."""
  problems: list[Problem]
  tree: tree_lib.Tree                     # numpy arrays, [B, ...]
  table: LineTable
  expanded_states: list[dict[int, str]]  # per tree: expanded node -> its state
  programs: list[list[SampledProgram]]   # per tree, in sampling order
  steps: int
  timing: dict[str, float]               # seconds: generation, execution, value, bookkeeping

  def node_state(self, b: int, node: int) -> str:
    """State of any node: expanded ones are stored, others are parent state + their line."""
    if node in self.expanded_states[b]:
      return self.expanded_states[b][node]
    parent = int(self.tree.parent[b, node])
    if parent < 0:
      return self.problems[b].starter_code
    return self.node_state(b, parent) + self.table.line(int(self.tree.line_id[b, node]))


class NullPool:
  """A pool that runs nothing: every program gets an empty result (reward 0)."""

  def submit(self, programs: Sequence[str], suites: Sequence[Any]) -> cf.Future:
    future: cf.Future = cf.Future()
    future.set_result([ExecResult(statuses=(), isolation="none") for _ in programs])
    return future


class _TimedFuture:
  def __init__(self, future: cf.Future, clock: dict[str, float]):
    self._future, self._clock = future, clock

  def result(self, timeout: float | None = None):
    start = time.perf_counter()
    try:
      return self._future.result(timeout)
    finally:
      self._clock["execution"] += time.perf_counter() - start

  def add_done_callback(self, fn) -> None:
    self._future.add_done_callback(lambda _: fn(self))


class _TimedPool:
  """Counts the time spent waiting for execution results (what generation did not overlap)."""

  def __init__(self, pool: Any, clock: dict[str, float]):
    self._pool, self._clock = pool, clock

  def submit(self, programs, suites):
    return _TimedFuture(self._pool.submit(programs, suites), self._clock)


def _select_each(tree: tree_lib.Tree, keys: jax.Array, c: jax.Array, eps: jax.Array):
  """`select` on each tree with its own key (independent of the batch composition).  # [B]"""
  def one(t, key):
    return select(jax.tree.map(lambda x: x[None], t), c, eps, key)[0]
  return jax.vmap(one)(tree, keys)


@functools.partial(jax.jit, static_argnames=("max_depth",))
def _pick(tree, step_key, tree_ids, active, c, eps, max_depth: int):
  keys = jax.vmap(lambda i: jax.random.fold_in(step_key, i))(tree_ids)  # [B] one per tree
  leaf = jnp.where(active, _select_each(tree, keys, c, eps), tree_lib.NO_NODE)  # [B]
  plan = plan_leaves(tree, leaf)
  needs_state = plan.expand | plan.evaluate
  p = path(tree, jnp.where(needs_state, leaf, tree_lib.NO_NODE), max_depth)
  return leaf, plan, p.line_ids, p.length


@functools.partial(jax.jit, static_argnames=("width_cap", "mode"))
def _update(tree, leaf, plan, line_ids, terminal, valid, sampled, child_value, scores,
            eval_score, width_cap: int, mode: str):
  """valid [B, n]: samples that continue their node (children); sampled [B, n]: every sample
  drawn (collection backs up all of them: each was sampled from the node's state)."""
  parent = jnp.where(plan.expand, leaf, tree_lib.NO_NODE)  # [B]
  if mode == "vm":
    tree, _ = add_children(tree, parent, line_ids, terminal, valid, child_value, width_cap, "vm")
  else:
    tree, _ = add_children(tree, parent, line_ids, terminal, valid, None, width_cap, "collect")
  tree, _ = reuse_terminal_value(tree, jnp.where(plan.reuse, leaf, tree_lib.NO_NODE))
  if mode == "vm":
    tree = backup_from_children(tree, parent)
    node = jnp.where(plan.evaluate, leaf, tree_lib.NO_NODE)
    return backup(tree, node, jnp.ones_like(leaf), eval_score)
  count = jnp.where(plan.expand, jnp.sum(sampled, axis=1), 1)  # [B]
  wsum = jnp.where(plan.expand, jnp.sum(jnp.where(sampled, scores, 0.0), axis=1), eval_score)
  return backup(tree, jnp.where(plan.expand | plan.evaluate, leaf, tree_lib.NO_NODE), count,
                wsum)


class _Search:
  """Mutable host state of one `run_search` call (kept out of the loop's function signature)."""

  def __init__(self, problems, sampler, sampling_params, config, pool, scorer, tree_ids, params):
    self.problems, self.sampler, self.sp, self.cfg = problems, sampler, sampling_params, config
    self.scorer, self.tree_ids, self.params = scorer, tree_ids, params
    b, n = len(problems), config.num_samples
    self.timing = {k: 0.0 for k in ("generation", "execution", "value", "bookkeeping", "total")}
    self.pool = _TimedPool(pool if config.mode == "collect" else NullPool(), self.timing)
    self.table = LineTable()
    # committed like `_update`'s outputs, so the first update does not compile a second program
    self.tree = jax.device_put(tree_lib.init_tree(b, tree_lib.capacity_for(config.iterations, n),
                                                  max(n, config.width)), jax.local_devices()[0])
    self.expanded_states: list[dict[int, str]] = [{} for _ in problems]
    # per tree: node state -> the text the policy continues it from (`lines.sampling_state`)
    self.continue_from: list[dict[str, str]] = [{p.starter_code: p.starter_code}
                                                for p in problems]
    self.programs: list[list[SampledProgram]] = [[] for _ in problems]
    self.scores: list[dict[str, float]] = [{} for _ in problems]  # program.rstrip() -> score
    self.vm_cache: dict[tuple[int, str], float] = {}
    self.expansions = np.zeros(b, np.int64)
    self.key = jax.random.key(config.seed)
    self.prefix: PrefixCache | None = None  # made by the first expansion (generation time)

  def cached_prompts(self) -> dict[str, Any]:
    """`rollout`'s prefix arguments: each tree's prompt before its state, cached once."""
    if not (self.cfg.prefix_cache and self.sampler.feed.rows_are_global):
      return {}
    if self.prefix is None:
      self.prefix = self.sampler.cache_prefixes(
          [build_prompt(p, "", self.sampler.tokenizer) for p in self.problems], self.params)
    return {"prefix": self.prefix}

  # -- scoring ---------------------------------------------------------------------------------

  def value_of(self, rows: Sequence[int], texts: Sequence[str]) -> np.ndarray:
    """Cached VM scores of (tree, state) pairs, the missing ones in ONE scorer call.  # [k]"""
    keys = [(int(b), t) for b, t in zip(rows, texts)]
    missing = list(dict.fromkeys(k for k in keys if k not in self.vm_cache))
    if missing:
      if self.scorer is None:
        raise ValueError(f"search mode {self.cfg.mode!r} needs a value model scorer")
      start = time.perf_counter()
      got = np.asarray(self.scorer([self.problems[b] for b, _ in missing],
                                   [t for _, t in missing]), np.float32)
      self.timing["value"] += time.perf_counter() - start
      if got.shape != (len(missing),):
        raise ValueError(f"scorer returned shape {got.shape} for {len(missing)} states")
      self.vm_cache.update(zip(missing, np.clip(got, 0.0, 1.0).tolist()))
    return np.array([self.vm_cache[k] for k in keys], np.float32)

  # -- one step --------------------------------------------------------------------------------

  def pick(self, step: int):
    active = self.expansions < self.cfg.iterations if self.cfg.count == "expansions" else (
        np.ones(len(self.problems), bool))
    out = _pick(self.tree, jax.random.fold_in(self.key, 2 * step), self.tree_ids.astype(np.uint32),
                active, self.cfg.c, self.cfg.eps, max_depth=self.cfg.iterations + 2)
    return jax.device_get(out)

  def expand(self, step: int, rows: np.ndarray, states: list[str]):
    """Sample (and in "collect" mode execute) n completions at each expanding leaf."""
    n, b = self.cfg.num_samples, len(self.problems)
    start, exec_before = time.perf_counter(), self.timing["execution"]
    prompts = [self.continue_from[i][s] for i, s in zip(rows, states)]
    cached = self.cached_prompts()
    records = rollout(self.sampler, self.pool, [self.problems[i] for i in rows], self.sp, n,
                      states=prompts, rng=jax.random.fold_in(self.key, 2 * step + 1),
                      chunk_size=max(len(rows) * n, 1), params=self.params,
                      request_ids=[int(self.tree_ids[i]) for i in rows],
                      prefix_of=[int(i) for i in rows] if cached else None, **cached)
    self.timing["generation"] += (time.perf_counter() - start
                                  - (self.timing["execution"] - exec_before))
    line_ids = np.zeros((b, n), np.int32)
    terminal, valid = np.zeros((b, n), bool), np.zeros((b, n), bool)
    programs = [r.program for r in records]
    for r in records:
      i, j, state = rows[r.request_index], r.sample_index, states[r.request_index]
      rest = continuation(r.program, state)
      if rest is None:  # the sample rewrote the state's last line: a program, but no child
        continue
      action = action_of(rest)
      line_ids[i, j], terminal[i, j], valid[i, j] = self.table.intern(action), action.terminal, True
      if not action.terminal:
        self.keep_sampling_state(i, state + action.line, r.program)
    tree_of = [rows[r.request_index] for r in records]
    child_states = [states[r.request_index] + (self.table.line(int(line_ids[t, r.sample_index]))
                                               if valid[t, r.sample_index] else "")
                    for t, r in zip(tree_of, records)]  # an invalid sample's value is unused
    return records, programs, tree_of, child_states, line_ids, terminal, valid

  def keep_sampling_state(self, b: int, child_state: str, program: str) -> None:
    """Where the policy will continue the child `child_state` of tree b from, cut by the token
    ends of `program`, the first sample that created it."""
    if child_state not in self.continue_from[b]:
      ends = state_token_ends(self.problems[b], program, self.sampler.tokenizer)
      self.continue_from[b][child_state] = sampling_state(child_state, program, ends)

  def score_expansions(self, records, programs, tree_of, child_states):
    """Program scores [k] and child values [k] of the sampled rows."""
    if self.cfg.mode == "collect":
      return np.array([r.reward for r in records], np.float32), None
    texts = list(programs) + (child_states if self.cfg.mode == "vm" else [])
    got = self.value_of(tree_of * (2 if self.cfg.mode == "vm" else 1), texts)
    k = len(programs)
    return got[:k], (got[k:] if self.cfg.mode == "vm" else None)

  def evaluate_terminals(self, rows: np.ndarray, states: list[str]) -> np.ndarray:
    """Score of each terminal leaf's program on its first visit.  # [k]"""
    out = np.zeros(len(rows), np.float32)
    missing = []
    for k, (b, s) in enumerate(zip(rows, states)):
      hit = self.scores[b].get(s.rstrip())
      if hit is None:
        missing.append(k)
      else:
        out[k] = hit
    if missing and self.cfg.mode == "collect":
      results = self.pool.submit([states[k] for k in missing],
                                 [self.problems[rows[k]].tests for k in missing]).result()
      out[missing] = [r.reward for r in results]
    elif missing:
      out[missing] = self.value_of([rows[k] for k in missing], [states[k] for k in missing])
    return out

  def step(self, step: int) -> None:
    leaf, plan, path_ids, path_len = self.pick(step)
    b, n = len(self.problems), self.cfg.num_samples
    need = np.flatnonzero(plan.expand | plan.evaluate)
    state_of = {int(i): self.table.state(self.problems[i].starter_code, path_ids[i],
                                         int(path_len[i])) for i in need}
    rows = np.flatnonzero(plan.expand)
    line_ids = np.zeros((b, n), np.int32)
    terminal, valid = np.zeros((b, n), bool), np.zeros((b, n), bool)
    scores, child_value = np.zeros((b, n), np.float32), np.zeros((b, n), np.float32)
    sampled = np.zeros((b, n), bool)
    if len(rows):
      states = [state_of[int(i)] for i in rows]
      records, programs, tree_of, child_states, line_ids, terminal, valid = self.expand(
          step, rows, states)
      prog_scores, child_scores = self.score_expansions(records, programs, tree_of, child_states)
      for k, r in enumerate(records):
        i = tree_of[k]
        scores[i, r.sample_index], sampled[i, r.sample_index] = prog_scores[k], True
        if child_scores is not None:
          child_value[i, r.sample_index] = child_scores[k]
        self.scores[i].setdefault(r.program.rstrip(), float(prog_scores[k]))
        self.programs[i].append(SampledProgram(
            int(leaf[i]), step, r.sample_index, r.program, float(prog_scores[k]),
            float(r.reward) if self.cfg.mode == "collect" else None))
      for i, s in zip(rows, states):
        self.expanded_states[i][int(leaf[i])] = s
      self.expansions[rows] += 1
    eval_score = np.zeros(b, np.float32)
    ev = np.flatnonzero(plan.evaluate)
    if len(ev):
      eval_score[ev] = self.evaluate_terminals(ev, [state_of[int(i)] for i in ev])
    self.tree = _update(self.tree, leaf, plan, line_ids, terminal, valid, sampled, child_value,
                        scores, eval_score, width_cap=self.cfg.width, mode=self.cfg.mode)

  def done(self) -> bool:
    return self.cfg.count == "expansions" and bool(np.all(self.expansions >= self.cfg.iterations))


def run_search(problems: Sequence[Problem], sampler: Any, sampling_params: SamplingParams,
               config: SearchConfig, *, pool: Any = None, scorer: StateScorer | None = None,
               tree_ids: Sequence[int] | None = None, params: Any = None) -> SearchResult:
  """Runs B = len(problems) searches together; see the module docstring.

  pool: the sandbox pool ("collect" mode); scorer: (problems, states) -> [k] scores in [0, 1]
  ("vm" / "orm" modes); tree_ids: global ids of the trees (default 0..B-1) that seed their
  randomness; params: policy parameters overriding the sampler's.
  """
  problems = list(problems)
  if not problems:
    raise ValueError("run_search: no problems")
  if config.mode == "collect" and pool is None:
    raise ValueError("run_search: mode 'collect' executes programs and needs a pool")
  if config.mode != "collect" and scorer is None:
    raise ValueError(f"run_search: mode {config.mode!r} needs a scorer (the value model)")
  tree_ids = np.arange(len(problems)) if tree_ids is None else np.asarray(tree_ids, np.int64)
  if tree_ids.shape != (len(problems),) or len(set(tree_ids.tolist())) != len(problems):
    raise ValueError(f"run_search: tree_ids must be {len(problems)} distinct ids, got {tree_ids}")
  search = _Search(problems, sampler, sampling_params, config, pool, scorer, tree_ids, params)
  start, steps = time.perf_counter(), 0
  while steps < config.max_steps and not search.done():
    search.step(steps)
    steps += 1
  tree = jax.device_get(search.tree)
  t = search.timing
  t["total"] = time.perf_counter() - start
  t["bookkeeping"] = t["total"] - t["generation"] - t["execution"] - t["value"]
  t["expansions"] = float(search.expansions.sum())
  return SearchResult(problems, tree, search.table, search.expanded_states, search.programs,
                      steps, t)


def preorder(tree: tree_lib.Tree, b: int) -> dict[int, int]:
  """Pre-order rank of every node of host tree b (children in slot order)."""
  order, stack = {}, [tree_lib.ROOT]
  while stack:
    node = stack.pop()
    order[node] = len(order)
    kids = [int(k) for k in tree.children[b, node] if k >= 0]
    stack.extend(reversed(kids))
  return order


def best_program(result: SearchResult, b: int) -> SampledProgram | None:
  """The highest-scoring program of tree b; ties: first in tree pre-order, then sample order."""
  programs = result.programs[b]
  if not programs:
    return None
  rank = preorder(result.tree, b)
  return min(programs, key=lambda p: (-p.score, rank.get(p.node, len(rank)), p.step, p.index))
