"""bench/common.py: the alternating timer runs every function once per round, in turn."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402


def test_timeit_alternating_interleaves_and_takes_medians(monkeypatch):
  calls, clock = [], iter(range(1000))
  monkeypatch.setattr(common.time, "perf_counter", lambda: float(next(clock)))
  durations = {"a": [5, 1, 3], "b": [2, 8, 4]}  # per timed round

  def make(name):
    def fn():
      calls.append(name)
      if len(calls) > 2:  # after the warm-up round, advance the fake clock by the duration
        for _ in range(durations[name][(len(calls) - 3) // 2] - 1):
          next(clock)
    return fn

  out = common.timeit_alternating({"a": make("a"), "b": make("b")}, repeats=3, warmup=1)
  assert calls == ["a", "b"] * 4
  assert out == {"a": 3.0, "b": 4.0}


def test_no_bench_script_shadows_a_standard_library_module():
  """Scripts run as `python bench/x.py` put bench/ first on sys.path: a bench/profile.py hid the
  standard library's `profile` and broke PyTorch's import in every bench script."""
  bench_dir = Path(__file__).resolve().parents[1] / "bench"
  names = {p.stem for p in bench_dir.glob("*.py")} | {p.name for p in bench_dir.iterdir()
                                                       if p.is_dir()}
  assert not names & set(sys.stdlib_module_names), names & set(sys.stdlib_module_names)
