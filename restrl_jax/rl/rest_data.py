"""ReST-GRPO training-prompt assembly (docs/method.md §4.2; the paper's σ0, r0, α, β, Eq. 3).

Host-side numpy. From the N sampled programs of each problem (text WITHOUT the initial state, with
their execution rewards) build the GRPO prompt set:

* mode "sample" (ReST-GRPO, the default): drop problems whose population reward std (ddof=0) is
  below σ0; keep the original prompt (state = init_state) of every other problem; when its best
  reward (first max on ties) is >= r0, add m partial states P_k = init_state + the first k lines
  of the best program, k ~ q(k) ∝ α^(k-1) on 1..L drawn with replacement, m = ceil(β·L) for a
  float β in (0, 1], m = β for an int β.
* mode "all" (the original `--extract_all_lines`): same filters, every prefix P_1..P_L once.
* mode "basic" (naive GRPO data; the original's β <= 0): every problem's original prompt, no filter.

Where a partial state ends (`state_end`). The paper's P_k ends each line with "\\n". A BPE
tokenizer may merge a newline with the next line's indentation ("\\n    " is one token of the
embedded tokenizer), so a prompt ending in a bare "\\n" token puts the policy where it never was
in training: it writes the next line unindented. Measured with
the demo policy re-sampling the demo's partial states: 41% fail outright with "newline" (mean
reward 0.44), 0% with "token" (mean 0.78). Default "token": P_k ends at the end of line k's text
and the completion starts with the newline; "newline" keeps the paper's form. The program is
state + completion either way.

Unlike the original (Python `random`, unseeded) the draws come from a numpy Generator, so a seed
reproduces the data; `dedup=True` drops repeated prefixes (the original keeps them).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

import numpy as np

MODES = ("sample", "all", "basic")
KINDS = ("original", "partial")
STATE_ENDS = ("token", "newline")


@dataclasses.dataclass(frozen=True)
class ProblemSamples:
  """The N sampled programs of one problem (without init_state) and their rewards."""
  problem_id: str
  init_state: str
  samples: tuple[str, ...]
  rewards: tuple[float, ...]

  def __post_init__(self):
    if len(self.samples) != len(self.rewards):
      raise ValueError(f"problem {self.problem_id!r}: {len(self.samples)} samples but "
                       f"{len(self.rewards)} rewards")
    if not all(math.isfinite(r) for r in self.rewards):
      raise ValueError(f"problem {self.problem_id!r}: rewards must be finite, got {self.rewards}")


@dataclasses.dataclass(frozen=True)
class RestRow:
  """One GRPO training prompt: continue `problem_id` from `state`."""
  problem_id: str
  state: str             # init_state (original) or init_state + first k lines (partial)
  kind: str              # "original" | "partial"
  prefix_lines: int      # k; 0 for the original prompt


@dataclasses.dataclass(frozen=True)
class RestDataConfig:
  sigma0: float = 0.05           # std threshold (population std, ddof=0)
  r0: float = 0.9                # best-reward threshold for partial states
  alpha: float = 0.95            # geometric decay of the cut-point pmf
  beta: float | int = 0.5        # float: ratio (m = ceil(β·L)); int: fixed count m = β
  mode: str = "sample"           # "sample" | "all" | "basic"
  dedup: bool = False            # drop repeated partial states of a problem
  state_end: str = "token"       # "token" | "newline" (the paper's P_k); see the module docstring

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"mode={self.mode!r}; choose from {MODES}")
    if self.state_end not in STATE_ENDS:
      raise ValueError(f"state_end={self.state_end!r}; choose from {STATE_ENDS}")
    if not 0.0 < self.alpha <= 1.0:
      raise ValueError(f"alpha={self.alpha} must be in (0, 1]")
    if self.mode == "sample":
      _check_beta(self.beta)


def _check_beta(beta: float | int) -> None:
  if isinstance(beta, bool) or not isinstance(beta, (int, float)):
    raise ValueError(f"beta={beta!r} must be an int (count) or a float (ratio)")
  if isinstance(beta, int) and beta < 1:
    raise ValueError(f"beta={beta} as a count must be >= 1 (use mode='basic' for no partials)")
  if isinstance(beta, float) and not 0.0 < beta <= 1.0:
    raise ValueError(f"beta={beta} as a ratio must be in (0, 1]")


def mode_from_flags(n_sample: float | int, extract_all_lines: bool) -> str:
  """The original CLI's choice: `--extract_all_lines` wins, then n_sample <= 0 means basic."""
  if extract_all_lines:
    return "all"
  return "basic" if n_sample <= 0 else "sample"


def prefix_pmf(num_lines: int, alpha: float) -> np.ndarray:
  """q(k) = α^(k-1) / Σ_j α^(j-1) for k = 1..L."""  # [L]
  if num_lines < 1:
    raise ValueError(f"num_lines={num_lines} must be >= 1")
  weights = alpha ** np.arange(num_lines, dtype=np.float64)
  return weights / weights.sum()


def num_partial_draws(num_lines: int, beta: float | int) -> int:
  """m = β for an int β, else ceil(β·L) (float arithmetic exactly as the original)."""
  _check_beta(beta)
  return beta if isinstance(beta, int) else math.ceil(num_lines * beta)


def best_sample(rewards: Sequence[float]) -> int:
  """Index of the highest reward, the first one on ties."""
  return int(np.argmax(np.asarray(rewards, dtype=np.float64)))


def prefix_states(init_state: str, program: str, state_end: str = "token") -> list[str]:
  """P_1..P_L: init_state + the first k lines of `program.rstrip()`; with state_end "newline"
  each line ends in "\\n", with "token" the last one does not (see the module docstring)."""
  if state_end not in STATE_ENDS:
    raise ValueError(f"state_end={state_end!r}; choose from {STATE_ENDS}")
  lines = program.rstrip().split("\n")
  tail = "\n" if state_end == "newline" else ""
  return [init_state + "\n".join(lines[:k]) + tail for k in range(1, len(lines) + 1)]


def passes_filter(rewards: Sequence[float], sigma0: float) -> bool:
  """Keep a problem iff its population reward std is >= σ0 (an empty problem is dropped)."""
  return len(rewards) > 0 and float(np.std(np.asarray(rewards, dtype=np.float64))) >= sigma0


def _original(p: ProblemSamples) -> RestRow:
  return RestRow(p.problem_id, p.init_state, "original", 0)


def _partial_ks(num_lines: int, cfg: RestDataConfig, rng: np.random.Generator) -> list[int]:
  if cfg.mode == "all":
    return list(range(1, num_lines + 1))
  m = num_partial_draws(num_lines, cfg.beta)
  ks = rng.choice(np.arange(1, num_lines + 1), size=m, replace=True,
                  p=prefix_pmf(num_lines, cfg.alpha))
  ks = [int(k) for k in ks]
  return list(dict.fromkeys(ks)) if cfg.dedup else ks


def problem_rows(p: ProblemSamples, cfg: RestDataConfig, rng: np.random.Generator) -> list[RestRow]:
  """The rows contributed by one problem (possibly none)."""
  if cfg.mode == "basic":
    return [_original(p)]
  if not passes_filter(p.rewards, cfg.sigma0):
    return []
  best = best_sample(p.rewards)
  if p.rewards[best] < cfg.r0:
    return [_original(p)]
  states = prefix_states(p.init_state, p.samples[best], cfg.state_end)
  ks = _partial_ks(len(states), cfg, rng)
  return [_original(p)] + [RestRow(p.problem_id, states[k - 1], "partial", k) for k in ks]


def assemble(problems: Iterable[ProblemSamples], cfg: RestDataConfig = RestDataConfig(),
             rng: np.random.Generator | int | None = 0) -> list[RestRow]:
  """All training rows, problem by problem in input order (the trainer shuffles them)."""
  rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
  rows: list[RestRow] = []
  for p in problems:
    rows.extend(problem_rows(p, cfg, rng))
  return rows


def summarize(rows: Sequence[RestRow]) -> dict[str, float]:
  """Counts for logging: rows, originals, partials, distinct problems, mean prefix length."""
  partial = [r.prefix_lines for r in rows if r.kind == "partial"]
  return {"rows": len(rows), "original": len(rows) - len(partial), "partial": len(partial),
          "problems": len({r.problem_id for r in rows}),
          "mean_prefix_lines": float(np.mean(partial)) if partial else 0.0}
