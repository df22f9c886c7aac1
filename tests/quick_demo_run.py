"""One quick demo run per test session, shared by tests/test_e2e_demo.py and
tests/test_colab_notebook.py: the Colab notebook is executed headlessly (nbclient) on CPU, and it
runs the README's command (`python -m restrl_jax.main --config=configs/demo.py
--config.quick=True`) in a subprocess, so both tests check the same run directory.
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "colab" / "restrl_jax_demo.ipynb"


class NotebookRun(NamedTuple):
  notebook: object      # the executed nbformat.NotebookNode (outputs filled in)
  workdir: Path         # the demo's run folder
  error: str | None     # the failure (cell error, timeout), None when every cell ran


def demo_env(**extra: str) -> dict[str, str]:
  """The environment of the demo: CPU, the machine's real device count (no simulated 8)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
  env.pop("XLA_FLAGS", None)
  return env


def run_cli(workdir: Path) -> subprocess.CompletedProcess:
  """The README's main command in its quick variant, as a user types it."""
  return subprocess.run(
      [sys.executable, "-m", "restrl_jax.main", "--config=configs/demo.py",
       "--config.quick=True", f"--config.workdir={workdir}"],
      cwd=REPO, env=demo_env(), capture_output=True, text=True, timeout=900)


def missing_notebook_deps() -> list[str]:
  """What executing the notebook needs (the `test` extra) and this environment lacks."""
  import importlib.util
  return [m for m in ("nbformat", "nbclient", "ipykernel", "matplotlib")
          if importlib.util.find_spec(m) is None]


@functools.cache
def notebook_run(basetemp: Path) -> NotebookRun:
  """Execute the notebook once per session (cached on pytest's base temp folder)."""
  import nbformat
  from nbclient import NotebookClient
  workdir = basetemp / "colab_quick_demo"
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  env = demo_env(RESTRL_COLAB_WORKDIR=str(workdir), RESTRL_COLAB_QUICK="auto",
                 RESTRL_COLAB_OVERRIDES="")
  # kernel started in the checkout: restrl_jax imports from there even without an install
  client = NotebookClient(notebook, timeout=900, kernel_name="python3",
                          resources={"metadata": {"path": str(REPO)}})
  try:
    client.execute(env=env)
    error = None
  except Exception as e:  # CellExecutionError, timeouts, a dead kernel: reported by each test
    error = f"{type(e).__name__}: {_plain(str(e))[-2000:]}\n--- notebook output (end) ---\n" + \
        _plain(_printed(notebook))[-4000:]
  return NotebookRun(notebook, workdir, error)


def _printed(notebook) -> str:
  return "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", [])
                 if o.get("output_type") == "stream")


def _plain(text: str) -> str:
  return re.sub(r"\x1b\[[0-9;]*m", "", text)   # IPython's colour codes
