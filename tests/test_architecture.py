"""The floors of docs/architecture.md hold: no module of restrl_jax imports a unit of a higher
floor or a library below the floor that may import it, or a package outside it (experiments/,
bench/), imports inside functions included; every unit is placed on a floor; setup.py installs
restrl_jax alone. The checker also runs on a small bad tree, to show it catches each kind of
violation."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import setuptools

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "restrl_jax"
OUTSIDE = ("experiments", "bench")   # beside the package, importing it; never imported by it


def _table_rows(doc: str, heading: str) -> list[list[str]]:
  """The cells of the body rows of the first table under `## <heading>`."""
  section = doc.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
  rows = [line.strip().strip("|").split("|") for line in section.splitlines()
          if line.startswith("|")]
  return [[c.strip() for c in row] for row in rows[2:]]   # past the header and its |---|


def read_rules(doc: str) -> tuple[dict[str, int], dict[str, int]]:
  """({unit: floor}, {library: lowest floor that may import it}) from the doc's two tables."""
  floors = {unit: int(row[0]) for row in _table_rows(doc, "Floors")
            for unit in re.findall(r"`([\w.]+)`", row[1])}
  libraries = {lib: int(row[1]) for row in _table_rows(doc, "Libraries")
               for lib in re.findall(r"`([\w.]+)`", row[0])}
  return floors, libraries


def module_name(root: Path, path: Path) -> str:
  parts = path.relative_to(root.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
  """`restrl_jax.rl.trainer` -> `rl`; the package's own `__init__` is the unit `__init__`."""
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else "__init__"


def imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
  """(line, dotted name) of every import anywhere in the module: statements at any depth,
  `from a import b` as `a.b` (b may be a submodule), relative imports resolved, and
  `importlib.import_module("<literal>")`."""
  package = module if is_package else module.rpartition(".")[0]
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [(node.lineno, alias.name) for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", ""))
          == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
          and isinstance(node.args[0].value, str)):
      out.append((node.lineno, node.args[0].value))
  return out


def check_tree(root: Path, floors: dict[str, int], libraries: dict[str, int]) -> list[str]:
  """One line per violation in the package at `root` (a folder named like the package)."""
  problems, seen = [], set()
  for path in sorted(root.rglob("*.py")):
    module = module_name(root, path)
    unit = unit_of(module)
    seen.add(unit)
    where = f"{path.relative_to(root.parent)}"
    if unit not in floors:
      problems.append(f"{where}: unit {unit!r} is on no floor of docs/architecture.md")
      continue
    floor = floors[unit]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for line, name in imported(tree, module, path.name == "__init__.py"):
      top = name.split(".")[0]
      if top == root.name and name != root.name:
        target = name.split(".")[1]
        if target in floors and floors[target] > floor:
          problems.append(f"{where}:{line}: imports {name} (floor {floors[target]}) from floor "
                          f"{floor} ({unit})")
      elif top in OUTSIDE:
        problems.append(f"{where}:{line}: imports {name}, which is outside {root.name}")
      elif top in libraries and libraries[top] > floor:
        problems.append(f"{where}:{line}: imports {name}, allowed from floor {libraries[top]} "
                        f"up, from floor {floor} ({unit})")
  problems += [f"docs/architecture.md places {u!r}, which {root.name} has not"
               for u in sorted(set(floors) - seen)]
  return problems


def _rules():
  return read_rules((REPO / "docs" / "architecture.md").read_text(encoding="utf-8"))


def test_the_package_keeps_the_floors_of_the_architecture_doc():
  floors, libraries = _rules()
  assert check_tree(REPO / PACKAGE, floors, libraries) == []


def test_setup_installs_the_package_alone():
  """setup.py's find_packages picks restrl_jax and its subpackages, not experiments/ or bench/."""
  call = next(node for node in ast.walk(ast.parse((REPO / "setup.py").read_text()))
              if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "find_packages")
  kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
  found = setuptools.find_packages(str(REPO), **kwargs)
  assert PACKAGE in found and "restrl_jax.evaluation" in found
  assert all(p.split(".")[0] == PACKAGE for p in found), found
  for outside in OUTSIDE:
    assert (REPO / outside / "__init__.py").is_file(), outside   # importable from the repo root


def test_the_outside_packages_import_the_package_but_no_floor_lists_them():
  floors, _ = _rules()
  assert not set(OUTSIDE) & set(floors)
  imports = [name for path in (REPO / "experiments").glob("*.py")
             for _, name in imported(ast.parse(path.read_text(encoding="utf-8")),
                                     f"experiments.{path.stem}", path.name == "__init__.py")]
  assert any(name.startswith(f"{PACKAGE}.") for name in imports)
  for name in imports:   # every unit they import is one the package has
    if name.startswith(f"{PACKAGE}."):
      assert name.split(".")[1] in floors, name


def test_the_doc_states_the_floors_the_issue_asks_for():
  """Domain packages sit below the config and the pipeline; execution below JAX."""
  floors, libraries = _rules()
  for domain in ("rl", "search", "value", "warmstart", "evaluation", "models", "sampling",
                 "execution"):
    assert floors[domain] < min(floors["pipeline"], libraries["ml_collections"]), domain
  assert floors["execution"] < libraries["jax"]


def _write(root: Path, files: dict[str, str]) -> Path:
  for name, text in files.items():
    path = root / PACKAGE / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
  return root / PACKAGE


BAD_TREE = {
    "__init__.py": "",
    "execution/__init__.py": "def run():\n  import jax.numpy as jnp\n  return jnp.zeros(1)\n",
    "execution/pool.py": "from ..rl import losses\n",
    "rl/__init__.py": "",
    "rl/losses.py": "def load(path):\n  from ml_collections import ConfigDict\n  return ConfigDict()\n",
    "rl/stage.py": "from restrl_jax.pipeline.stages import StageContext\n",
    "rl/lazy.py": "import importlib\nstages = importlib.import_module('restrl_jax.pipeline')\n",
    "pipeline/__init__.py": "import ml_collections\nfrom restrl_jax import rl, execution\n",
    "stray.py": "",
    "rl/sweeps.py": "def run():\n  from experiments import sweep\n  return sweep\n",
}
DOC = """## Floors

| floor | units | what |
|---|---|---|
| 0 | `execution` | sandbox |
| 4 | `rl` | method |
| 6 | `pipeline`, `__init__`, `gone` | top |

## Libraries

| library | lowest floor |
|---|---|
| `jax` | 1 |
| `ml_collections` | 5 |
"""


def test_the_checker_finds_every_kind_of_violation_in_a_bad_tree(tmp_path):
  floors, libraries = read_rules(DOC)
  assert floors == {"execution": 0, "rl": 4, "pipeline": 6, "__init__": 6, "gone": 6}
  problems = check_tree(_write(tmp_path, BAD_TREE), floors, libraries)
  expected = [
      "restrl_jax/execution/__init__.py:2: imports jax.numpy, allowed from floor 1 up",
      "restrl_jax/execution/pool.py:1: imports restrl_jax.rl.losses (floor 4) from floor 0",
      "restrl_jax/rl/lazy.py:2: imports restrl_jax.pipeline (floor 6) from floor 4",
      "restrl_jax/rl/losses.py:2: imports ml_collections.ConfigDict, allowed from floor 5 up",
      "restrl_jax/rl/stage.py:1: imports restrl_jax.pipeline.stages.StageContext (floor 6)",
      "restrl_jax/rl/sweeps.py:2: imports experiments.sweep, which is outside restrl_jax",
      "restrl_jax/stray.py: unit 'stray' is on no floor",
      "docs/architecture.md places 'gone', which restrl_jax has not",
  ]
  assert len(problems) == len(expected), problems
  for line, want in zip(problems, expected):
    assert line.startswith(want), (line, want)


def test_the_checker_passes_a_tree_that_keeps_its_floors(tmp_path):
  floors, libraries = read_rules(DOC)
  good = {"__init__.py": "", "gone.py": "", "stray.py": "",
          "execution/__init__.py": "import os\n",
          "rl/__init__.py": "import jax\nfrom restrl_jax.execution import run\n",
          "pipeline/__init__.py": "import ml_collections\nfrom . import stages\n",
          "pipeline/stages.py": "from ..rl import losses\n"}
  assert check_tree(_write(tmp_path, good), floors | {"stray": 6}, libraries) == []
