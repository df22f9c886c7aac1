"""Value-target collection (docs/method.md §5): execution-scored MCTS, then (problem, state, value) records.

  result = run_search(problems, sampler, sp, collect_config(), pool=pool)
  records = value_records(result)

Records (JSON-ready dicts), per problem:
  kind "node"      every expanded node (root included): state = its program prefix,
                   value = V = W / N at the end of the search (intermediate targets, §5.3-2);
  kind "program"   every sampled full program with its own executed reward (§5.3-1);
  kind "terminal"  terminal nodes reached by selection, with their visit count (not value
                   targets by default: their program is already a "program" record; kept so that
                   every node value can be recomputed from the records).
A node whose samples all failed to continue its state (`lines.continuation`) has no children
but was sampled from and backed up, so it is a "node" record too.
Each record has: problem_id, prompt (the raw problem text q), state, value, kind, node, parent,
depth, visits (nodes) / the node it was sampled at (programs).
Fixes of docs/method.md §9: sampled programs are immutable records (no aliased completion lists);
width pruning among children that all have V = 0 ranks by how many samples share the line
(`update.add_children`, mode "collect") instead of keeping whichever came first.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from restrl_jax.data.problem import Problem
from restrl_jax.sampling import SamplingParams
from restrl_jax.search.driver import SearchConfig, SearchResult, run_search

KINDS = ("node", "program", "terminal")
TARGET_KINDS = ("node", "program")


def collect_config(iterations: int = 100, num_samples: int = 5, width: int = 3, c: float = 0.2,
                   eps: float = 0.1, seed: int = 0) -> SearchConfig:
  """The paper's collection search (docs/method.md §5.2 defaults)."""
  return SearchConfig(iterations=iterations, num_samples=num_samples, width=width, c=c, eps=eps,
                      mode="collect", count="iterations", seed=seed)


def _node_record(result: SearchResult, b: int, node: int, kind: str) -> dict[str, Any]:
  t, p = result.tree, result.problems[b]
  visits = int(t.visits[b, node])
  return {"problem_id": p.id, "prompt": p.prompt, "state": result.node_state(b, node),
          "value": float(t.value_sum[b, node]) / visits, "kind": kind, "node": node,
          "parent": int(t.parent[b, node]), "depth": int(t.depth[b, node]), "visits": visits,
          "value_sum": float(t.value_sum[b, node])}


def tree_records(result: SearchResult, b: int) -> list[dict[str, Any]]:
  """Records of tree b: expanded nodes, terminal nodes visited, then every sampled program."""
  t, p = result.tree, result.problems[b]
  used = int(t.num_nodes[b])
  out = []
  for node in range(used):
    if t.visits[b, node] <= 0:
      continue
    if t.expanded[b, node] or node in result.expanded_states[b]:  # (no child if no sample
      out.append(_node_record(result, b, node, "node"))            # continued its state)
    elif t.terminal[b, node]:
      out.append(_node_record(result, b, node, "terminal"))
  for s in result.programs[b]:
    out.append({"problem_id": p.id, "prompt": p.prompt, "state": s.program,
                "value": float(s.reward), "kind": "program", "node": s.node,
                "depth": int(t.depth[b, s.node]) + 1, "step": s.step})
  return out


def value_records(result: SearchResult) -> list[dict[str, Any]]:
  """All records of a finished collection search, problem by problem."""
  if any(s.reward is None for ps in result.programs for s in ps):
    raise ValueError("value_records: the search did not execute its programs (use mode "
                     "'collect'); VM/ORM scores are not value targets")
  return [r for b in range(len(result.problems)) for r in tree_records(result, b)]


def collect_values(problems: Sequence[Problem], sampler: Any, pool: Any,
                   sampling_params: SamplingParams, config: SearchConfig | None = None,
                   tree_ids: Sequence[int] | None = None, params: Any = None
                   ) -> tuple[list[dict[str, Any]], SearchResult]:
  """Runs the collection search on `problems` (B trees together) and returns its records."""
  config = config or collect_config()
  if config.mode != "collect":
    raise ValueError(f"collect_values: config.mode must be 'collect', got {config.mode!r}")
  result = run_search(problems, sampler, sampling_params, config, pool=pool, tree_ids=tree_ids,
                      params=params)
  return value_records(result), result


def summarize_records(records: Sequence[dict[str, Any]]) -> dict[str, float]:
  """Counts and mean values of a record set, by kind."""
  out: dict[str, float] = {"num_records": len(records),
                           "num_problems": len({r["problem_id"] for r in records})}
  for kind in KINDS:
    vals = [r["value"] for r in records if r["kind"] == kind]
    out[f"num_{kind}s"] = len(vals)
    out[f"mean_{kind}_value"] = float(np.mean(vals)) if vals else 0.0
  return out
