"""Evaluation problems held out of training: a training problem whose task text is that of an
evaluation problem is dropped.

Ids cannot decide it: APPS numbers its train and test problems from 0 in both splits, while
BigCodeBench's training and evaluation files may hold the same task under the same id. The task
text (whitespace runs collapsed, ends stripped) is the same in both copies of one task and
differs between different ones.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from restrl_jax.data.problem import Problem


def task_key(problem: Problem) -> str:
  """The problem's task text with whitespace runs collapsed."""
  return " ".join(problem.prompt.split())


def drop_held_out(train: Sequence[Problem], held_out: Iterable[Problem]
                  ) -> tuple[list[Problem], list[str]]:
  """(training problems kept, ids of those dropped because an evaluation problem has their task
  text)."""
  held = {task_key(p) for p in held_out}
  kept = [p for p in train if task_key(p) not in held]
  dropped = [p.id for p in train if task_key(p) in held]
  return kept, dropped
