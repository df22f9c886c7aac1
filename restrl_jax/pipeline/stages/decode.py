"""Stage `decode`: VM-MCTS and its baselines at an equal budget (docs/method.md §7).

Decodes `config.mcts.decode_*` test problems with each method of `decode_methods` (sampling,
best-of-N, ORM-MCTS, VM-MCTS), B trees at a time, with the newest policy and the value model of
`train_value`; every answer runs in the sandbox. Per method `<stage_dir>/<method>.jsonl` (the
answers and their rewards) and `<method>.json` (its scores; a rerun skips finished methods), and a
summary row "<method> (<budget> samples)".

With several processes each decodes its batch of every round of B x processes problems
(`common.batches`) on its own devices, with its own copy of the value model, and runs its answers
in its own sandbox pool; the answers are gathered in problem order and process 0 writes them. The
searches draw their randomness from the problems' indices, so the answers equal one process's.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from restrl_jax import distributed, io_utils
from restrl_jax.pipeline.policy_source import weights_digest
from restrl_jax.pipeline.registry import StageContext, register_stage
from restrl_jax.pipeline.sections import dataclass_from, section
from restrl_jax.pipeline.stages.common import (batches, benchmark_problems, execution_pool,
                                               policy_sampler, sampling_params)
from restrl_jax.search import answer_selection
from restrl_jax.search.mcts_config import MCTSConfig
from restrl_jax.value.model import load_value_model
from restrl_jax.value.train import BEST_DIR

STAGE = "decode"
READS = ("seed", "model", "sampling", "execution.isolation", "value.dtype",
         "value.score_batch_size", "mcts.decode_*", "mcts.eps", "mcts.seed", "mcts.batch_trees",
         "mcts.max_steps_factor")
# `mcts` keys in no MCTSConfig field: the test problems, loaded here, the methods decoded and the
# trees searched together (`batches`)
STAGE_KEYS = ("decode_benchmark", "decode_data_path", "decode_split", "decode_num_problems",
              "decode_methods", "batch_trees")


def _answer_rows(answers, rewards) -> list[dict]:
  return [dict(dataclasses.asdict(a), candidates=len(a.candidates), rewards=r)
          for a, r in zip(answers, rewards)]


@dataclasses.dataclass(frozen=True)
class Decoding:
  """What decoding every method uses: the test problems, the policy's sampler and settings, this
  process's sandbox pool, the value model's scorer, the searches' settings and the trees
  searched together."""
  problems: list
  sampler: Any
  sampling: Any       # SamplingParams
  pool: Any
  scorer: Any
  mcts: MCTSConfig
  batch_trees: int

  def share(self, method: str, rows: range) -> list[tuple]:
    """This process's problems `rows` (maybe none) decoded with `method`, their answers run in
    its sandbox pool -> [(answer, its rewards)]."""
    if not rows:
      return []
    batch = [self.problems[i] for i in rows]
    answers = self.mcts.decode(method, batch, self.sampler, self.sampling, self.scorer,
                               tree_ids=list(rows))
    return list(zip(answers, answer_selection.execute_answers(self.pool, batch, answers)))


def _decode_method(method: str, decoding: Decoding, stage_dir: Path) -> dict:
  """Every problem decoded with `method`, round by round over the processes (answers gathered in
  problem order); process 0 writes `<method>.jsonl` and `<method>.json`. -> the method's scores
  (keys sorted, as read back from that file)."""
  answered = []
  for rows in batches(len(decoding.problems), decoding.batch_trees):
    answered += distributed.gather_lists(decoding.share(method, rows))
  answers, rewards = [a for a, _ in answered], [r for _, r in answered]
  scores = dict(sorted(answer_selection.answer_metrics(answers, rewards).items()))
  if distributed.is_writer():
    io_utils.atomic_write_text(stage_dir / f"{method}.jsonl", "".join(
        json.dumps(r) + "\n" for r in _answer_rows(answers, rewards)))
    io_utils.atomic_write_json(stage_dir / f"{method}.json", scores)
  return scores


@register_stage(STAGE, reads=READS)
def run(ctx: StageContext) -> dict[str, Any]:
  """Summary: one row per method, the budget, the policy and value model used."""
  config, stage_dir = ctx.config, Path(ctx.stage_dir)
  cfg, vcfg = section(config, "mcts"), section(config, "value")
  sampler, policy = policy_sampler(config, ctx.workdir)
  vm_path = Path(ctx.stage_output("train_value")) / BEST_DIR
  vm = load_value_model(vm_path, dtype=vcfg.dtype or config.model.dtype,
                        batch_size=vcfg.score_batch_size, mesh=sampler.mesh,
                        tokenizer=sampler.tokenizer)
  problems = benchmark_problems(cfg.decode_benchmark, cfg.decode_data_path, cfg.decode_split,
                                cfg.decode_num_problems)
  mcts = dataclass_from(cfg, MCTSConfig)
  rows = []
  with execution_pool(config) as pool:
    isolation = pool.isolation
    decoding = Decoding(problems, sampler, sampling_params(config.sampling), pool, vm.scorer(),
                        mcts, cfg.batch_trees)
    for method in cfg.decode_methods:
      out = stage_dir / f"{method}.json"
      scores = (json.loads(out.read_text()) if out.exists()
                else _decode_method(method, decoding, stage_dir))
      rows.append({"method": f"{method} ({mcts.budget} samples)",
                   "benchmark": cfg.decode_benchmark, **scores})
  return {"policy": str(policy), "policy_sha256": weights_digest(policy),
          "value_model": str(vm_path), "budget": mcts.budget,
          "isolation": isolation, "rows": rows}
