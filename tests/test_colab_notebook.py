"""colab/restrl_jax_demo.ipynb executed headlessly on CPU (nbclient), as CI runs it.

The run is shared with tests/test_e2e_demo.py (tests/quick_demo_run.py), which checks the run
folder the notebook's CLI call wrote; here: what the notebook itself shows and decides.
"""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from quick_demo_run import NOTEBOOK, REPO, notebook_run

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  run = notebook_run(tmp_path_factory.getbasetemp())
  assert run.error is None, run.error
  return run


def code_outputs(notebook) -> list[list[dict]]:
  return [cell.get("outputs", []) for cell in notebook.cells if cell.cell_type == "code"]


def stdout_of(outputs: list[dict]) -> str:
  return "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")


def cell_printing(notebook, text: str) -> str:
  """The stdout of the one code cell whose output contains `text`."""
  hits = [stdout_of(outs) for outs in code_outputs(notebook) if text in stdout_of(outs)]
  assert len(hits) == 1, f"{len(hits)} cells print {text!r}"
  return hits[0]


def test_notebook_is_valid_and_clean_in_the_repo():
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(notebook)
  assert notebook.metadata.kernelspec.name == "python3"
  # committed without outputs: Colab users see the cells, not a stale run
  assert all(not outs for outs in code_outputs(notebook))
  assert all(cell.get("execution_count") is None for cell in notebook.cells
             if cell.cell_type == "code")


def test_runtime_is_detected_and_printed(executed):
  assert "Runtime: CPU (JAX sees " in cell_printing(executed.notebook, "Runtime: ")


def test_install_is_skipped_inside_a_checkout(executed):
  text = cell_printing(executed.notebook, "skipping the install")
  assert f"restrl_jax is importable from {REPO}" in text
  assert "installing" not in stdout_of(sum(code_outputs(executed.notebook), []))


def test_quick_variant_of_the_readme_command_on_cpu(executed):
  text = cell_printing(executed.notebook, "$ ")
  assert text.startswith("Quick demo on CPU")
  command = text.split("$ ", 1)[1]
  assert "-m restrl_jax.main --config=configs/demo.py" in command
  assert f"--config.workdir={executed.workdir}" in command and "--config.quick=True" in command
  log = cell_printing(executed.notebook, "stage decode: running")
  assert "# restrl_jax run summary" in log   # the run's own output, streamed into the cell


def test_summary_table_is_displayed(executed):
  shown = [o["data"]["text/markdown"] for outs in code_outputs(executed.notebook) for o in outs
           if o.get("output_type") == "display_data" and "text/markdown" in o.get("data", {})]
  assert shown == [(executed.workdir / "summary.md").read_text()]
  assert "| vm_mcts (" in shown[0]


def test_plots_are_shown_and_saved(executed):
  images = [o for outs in code_outputs(executed.notebook) for o in outs
            if "image/png" in o.get("data", {})]
  assert len(images) == 3
  for name in ("grpo_reward", "value_loss", "methods"):
    png = (executed.workdir / "plots" / f"{name}.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, name


def test_plotted_data_exist_in_the_run(executed):
  """The files the plots read hold the numbers (not an empty figure)."""
  steps = [json.loads(line) for line in
           (executed.workdir / "rest_grpo" / "round_0" / "metrics.jsonl").read_text().splitlines()]
  assert steps and all(0.0 <= s["reward_mean"] <= 1.01 for s in steps)
  value = (executed.workdir / "train_value" / "metrics.jsonl").read_text()
  assert '"loss"' in value and '"eval_loss"' in value


# -- the Colab paths, without a kernel: the notebook's cells run with stand-ins ------------------

def code_cell(marker: str) -> str:
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  hits = [c.source for c in notebook.cells if c.cell_type == "code" and marker in c.source]
  assert len(hits) == 1, f"{len(hits)} code cells contain {marker!r}"
  return hits[0]


class FakeSubprocess:
  """Records the commands a cell runs instead of running them."""

  def __init__(self):
    self.calls = []

  def run(self, cmd, **kwargs):
    self.calls.append(cmd)
    return SimpleNamespace(returncode=0, stdout="", stderr="")


def run_install_cells(tmp_path, monkeypatch, backend: str, repo_url: str = "",
                      checkout: bool = True) -> tuple[dict, FakeSubprocess]:
  """The install cells on a machine where restrl_jax is not importable (fresh Colab)."""
  clone = tmp_path / "content" / "restrl_jax"
  if checkout:
    (clone / "restrl_jax").mkdir(parents=True)
    (clone / "setup.py").write_text("")
  (tmp_path / "content" / "notebooks").mkdir(parents=True, exist_ok=True)
  monkeypatch.chdir(tmp_path / "content" / "notebooks")
  fake = FakeSubprocess()
  ns = {"Path": Path, "CLONE_DIR": str(clone), "REPO_URL": repo_url, "BACKEND": backend,
        "found": None, "subprocess": fake, "sys": sys, "probe_jax": lambda: (backend, 1, "fake"),
        "shutil": SimpleNamespace(which=lambda name: None if name == "bwrap" else f"/bin/{name}"),
        "os": SimpleNamespace(geteuid=lambda: 0)}
  exec(code_cell("def installed_checkout"), ns)
  ns["installed_checkout"] = lambda: None
  exec(code_cell("REPO_DIR = installed_checkout()"), ns)
  return ns, fake


@pytest.mark.parametrize("backend,extra", [("gpu", "[gpu]"), ("tpu", "[tpu]"), ("cpu", "")])
def test_install_uses_the_extra_of_the_runtime(tmp_path, monkeypatch, backend, extra):
  ns, fake = run_install_cells(tmp_path, monkeypatch, backend)
  clone = tmp_path / "content" / "restrl_jax"
  assert ns["REPO_DIR"] == clone.resolve() and ns["BACKEND"] == backend
  assert fake.calls[0] == [sys.executable, "-m", "pip", "install", "-q", "-e",
                           f"{clone.resolve()}{extra}"]
  assert "install -y bubblewrap" in fake.calls[1]   # no bwrap, root: the sandbox is installed


def test_install_clones_repo_url_when_no_checkout(tmp_path, monkeypatch):
  url = "https://example.invalid/restrl_jax.git"
  ns, fake = run_install_cells(tmp_path, monkeypatch, "tpu", repo_url=url, checkout=False)
  clone = str(tmp_path / "content" / "restrl_jax")
  assert fake.calls[0] == ["git", "clone", "--depth=1", url, clone]
  assert fake.calls[1][-1] == f"{clone}[tpu]"


def test_no_checkout_and_no_url_names_what_to_set(tmp_path, monkeypatch):
  with pytest.raises(RuntimeError, match="no restrl_jax checkout .* set REPO_URL"):
    run_install_cells(tmp_path, monkeypatch, "gpu", checkout=False)


@pytest.mark.parametrize("backend,quick_param,quick", [
    ("cpu", "auto", True), ("gpu", "auto", False), ("tpu", "auto", False), ("gpu", "1", True),
    ("cpu", "0", False)])
def test_quick_variant_on_cpu_full_demo_on_accelerators(tmp_path, backend, quick_param, quick):
  ns = {"Path": Path, "sys": sys, "BACKEND": backend, "QUICK": quick_param, "ISOLATION": "auto",
        "WORKDIR": "runs/colab", "REPO_DIR": tmp_path, "OVERRIDES": "--config.seed=3"}
  exec(code_cell("cmd = [sys.executable"), ns)
  assert ns["cmd"][1:4] == ["-m", "restrl_jax.main", "--config=configs/demo.py"]
  assert f"--config.workdir={tmp_path / 'runs' / 'colab'}" in ns["cmd"]
  assert ("--config.quick=True" in ns["cmd"]) == quick and ns["cmd"][-1] == "--config.seed=3"
  assert not any("isolation" in arg for arg in ns["cmd"])   # the sandbox or a stop, never less


def test_the_weaker_sandbox_only_when_asked_for(tmp_path):
  ns = {"Path": Path, "sys": sys, "BACKEND": "gpu", "QUICK": "auto", "ISOLATION": "rlimits",
        "WORKDIR": "runs/colab", "REPO_DIR": tmp_path, "OVERRIDES": ""}
  exec(code_cell("cmd = [sys.executable"), ns)
  assert ns["cmd"][-1] == "--config.execution.isolation=rlimits"
