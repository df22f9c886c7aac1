"""The `rest_grpo` stage's held-out learning curve, drawn from its rounds' outputs: every round's
curve rows (`rl.rounds.CURVE_FILE`) on one step axis -> `<workdir>/plots/learning_curve.png`."""
from __future__ import annotations

from pathlib import Path

from restrl_jax import distributed, io_utils, plots
from restrl_jax.rl.rounds import CURVE_FILE


def json_lines(path: Path) -> list[dict]:
  return io_utils.read_jsonl(path) if path.is_file() else []


def curve_points(stage_dir: Path) -> list[dict]:
  """Every round's learning-curve rows, with `global_step` counting the steps of all rounds."""
  points, offset = [], 0
  for facts in json_lines(stage_dir / "rounds.jsonl"):
    round_dir = stage_dir / f"round_{facts['round']}"
    for row in json_lines(round_dir / CURVE_FILE):
      points.append({**row, "global_step": offset + row["step"]})
    offset += facts.get("steps", 0)
  return points


def plot_curve(stage_dir: Path, workdir: Path, method: str) -> dict:
  """`<workdir>/plots/learning_curve.png` from the held-out curve rows; facts for the summary."""
  points = curve_points(stage_dir)
  if not points or not distributed.is_writer():
    return {}
  series = lambda k: {method: [(p["global_step"], p[k], 0.0) for p in points]}
  path = plots.learning_curves(
      {"held-out strict accuracy": series("strict_accuracy"),
       "held-out test-case average": series("test_case_average")},
      workdir / "plots" / "learning_curve.png",
      title=f"{points[0]['num_problems']} held-out problems x "
            f"{points[0]['num_samples'] // points[0]['num_problems']} samples")
  first, last = points[0], points[-1]
  return {"curve_plot": str(path), "curve_strict_first": first["strict_accuracy"],
          "curve_strict_last": last["strict_accuracy"], "curve_points": len(points)}
