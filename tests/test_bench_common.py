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


def test_decode_ablation_stand_ins_replace_each_part_once_per_use():
  """bench/decode_ablation.py times a decode step without one part: each stand-in must be the
  function the step really calls (once per layer; the LM head once), and the byte counts behind
  its GB/s figures must be the part's own."""
  import dataclasses

  import jax

  from bench import decode_ablation
  from restrl_jax import models
  from restrl_jax.models import decoder

  config = dataclasses.replace(models.get_preset("tiny"), num_layers=2)
  params = models.init_params(config, jax.random.key(0))
  step_params = decoder.decode_params(params)
  for name, variant in decode_ablation.VARIANTS.items():
    if variant is None:
      continue
    target, stand_in = variant
    calls = []

    def spy(*args, stand_in=stand_in, **kwargs):
      calls.append(name)
      return stand_in(*args, **kwargs)

    decode_ablation._step_runner(config, step_params, (target, spy), batch=2, slots=8,
                                 steps=1)()
    assert len(calls) == (1 if name == "lm_head" else config.num_layers), (name, calls)
  sizes = decode_ablation._part_bytes(config, decoder.unstack_layers(params), batch=2, slots=8)
  d, f, item = config.hidden_size, config.intermediate_size, 4
  assert sizes["mlp"] == config.num_layers * 3 * d * f * item
  assert sizes["attention"] == 2 * config.num_layers * 2 * config.num_kv_heads * 8 * \
      config.head_dim * item
  assert sizes["lm_head"] == config.vocab_size * d * item
  run, step_bytes = decode_ablation.stream_runner(step_params, config, batch=2, slots=8, steps=1)
  run()
  param_bytes = sum(x.nbytes for x in jax.tree.leaves(step_params))
  assert step_bytes == param_bytes + sizes["attention"]


def test_train_phase_runners_cover_the_same_phases_and_run():
  """bench/train_phases.py compares phase by phase: both sides must offer the same phases, each
  a closure that runs (tiny model, short batch)."""
  import pytest

  pytest.importorskip("torch")
  pytest.importorskip("transformers")
  from bench import train_phases, train_step
  from restrl_jax import models

  config = models.get_preset("tiny")
  ours = train_step.ours_phase_runners(config, batch=2, seq=16)
  peer = train_step.torch_phase_runners(config, batch=2, seq=16)
  assert tuple(ours) == tuple(peer) == train_phases.PHASES
  for run in (*ours.values(), *peer.values()):
    run()


def test_train_parts_cover_every_projection_and_run():
  """bench/train_parts.py sums the step's parts: its projection counts must cover every layer
  kernel exactly once (entry for entry against the parameter tree), and every part runs, for a
  tied and an untied vocabulary projection."""
  import dataclasses

  import jax

  from bench import train_parts
  from restrl_jax import models

  tiny = models.get_preset("tiny")
  for config in (tiny, dataclasses.replace(tiny, tie_word_embeddings=True, dtype="bfloat16")):
    params = jax.eval_shape(lambda k: models.init_params(config, k), jax.random.key(0))
    kernels = [x.size for path, x in jax.tree_util.tree_leaves_with_path(params["layers"])
               if "kernel" in jax.tree_util.keystr(path)]
    counts = train_parts.projection_counts(config)
    assert sum(k * n * c for (k, n), c in counts.items()) == sum(kernels)
    assert sum(counts.values()) == 7 * config.num_layers
    parts = train_parts.part_runners(config, batch=2, seq=16)
    assert parts["attention"][1] == config.num_layers
    assert {c for name, (_, c) in parts.items() if not name.startswith("projection")} == {
        1, config.num_layers}
    for run, _ in parts.values():
      run()


def test_measure_alternating_counts_the_pages_a_call_faults_in():
  size = 64 << 20  # fresh memory: glibc maps a block this large anew at every allocation
  usage = common.measure_alternating({"touch": lambda: b"\x01" * size, "idle": lambda: None},
                                     repeats=3)
  huge_pages = size // (2 << 20)  # the fewest faults: every page a 2 MiB transparent huge page
  assert usage["touch"].minor_faults >= 0.9 * huge_pages
  assert usage["idle"].minor_faults < 0.1 * huge_pages
  assert usage["touch"].seconds > usage["idle"].seconds >= 0


def test_host_memory_bench_takes_medians_over_rounds():
  from bench import host_memory
  ours = [{"policy": "retain", "seconds": s, "minor_faults": f, "system_seconds": 0.0}
          for s, f in ((3.0, 10), (1.0, 30), (2.0, 20))]
  peer = [{"policy": "retain", "seconds": s, "minor_faults": 0, "system_seconds": 0.1}
          for s in (4.0, 6.0)]
  table = host_memory.summarize({"retain": {"ours": ours, "peer": peer}})
  assert table["retain"]["ours"] == {"seconds": 2.0, "minor_faults": 20, "system_seconds": 0.0}
  assert table["retain"]["peer"]["seconds"] == 6.0      # of two rounds: the slower
  assert set(host_memory.SETUPS) == {"release", "retain", "thp"}


def test_cpu_isa_names_the_widest_matmul_instructions():
  flags = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {}\n"
  assert common.cpu_isa(flags.format("amx_bf16 avx512_bf16")) == "AMX"
  assert common.cpu_isa(flags.format("avx512_bf16")) == "AVX-512 BF16"
  assert common.cpu_isa(flags.format("")) == "AVX-512"
  assert common.cpu_isa("no flags here") == "?"
  assert common.machine().endswith(common.cpu_isa())


def test_report_rows_go_to_the_end_of_the_top_table():
  doc = ("# Benchmarks\n\n| date | bench | ours |\n|---|---|---|\n| d1 | a | 1 |\n\n"
         "## Later\n\n| other | table |\n|---|---|\n| x | y |\n")
  out = common._insert_rows(doc, ["| d2 | b | 2 |\n", "| d2 | c | 3 |\n"])
  assert out == doc.replace("| d1 | a | 1 |\n", "| d1 | a | 1 |\n| d2 | b | 2 |\n| d2 | c | 3 |\n")
  assert common._insert_rows("# no table\n", ["| r |\n"]) == "# no table\n| r |\n"


def test_field_medians_take_each_fields_upper_median():
  rounds = [{"s": 3.0, "f": 10, "tag": "a"}, {"s": 1.0, "f": 30, "tag": "b"},
            {"s": 2.0, "f": 40, "tag": "c"}, {"s": 4.0, "f": 20, "tag": "d"}]
  assert common.field_medians(rounds, skip=("tag",)) == {"s": 3.0, "f": 30}


def test_in_rounds_runs_every_task_once_per_round_in_turn():
  calls = []
  tasks = {name: (lambda name=name: calls.append(name) or {"n": len(calls)}) for name in "ab"}
  out = common.in_rounds(tasks, rounds=2)
  assert calls == ["a", "b", "a", "b"]
  assert out == {"a": [{"n": 1}, {"n": 3}], "b": [{"n": 2}, {"n": 4}]}


def test_run_child_returns_the_last_result_and_names_a_failure():
  import pytest
  emit = "from bench import common; common.emit_result({'x': 1}); common.emit_result({'x': 2})"
  root = str(Path(__file__).resolve().parents[1])
  env = {"PYTHONPATH": root, "PATH": "/usr/bin:/bin"}
  assert common.run_child([sys.executable, "-c", emit], "emitter", env=env) == {"x": 2}
  with pytest.raises(RuntimeError, match=r"the failing child failed \(exit 3\)"):
    common.run_child([sys.executable, "-c", "import sys; sys.exit(3)"], "the failing child",
                     env=env)


def test_sampler_bench_children_time_each_side_alone():
  """bench/sampler.py runs every side in its own process: ours, the floor's read and (where torch
  is installed) PyTorch's generate() at a small generation."""
  import importlib.util

  from bench import sampler
  args = sampler.parse_args(["--sizes", "tiny", "--prompt", "8", "--new", "4", "--repeats", "1",
                             "--rounds", "1", "--no-train"])
  sides = ["ours", "stream"] + (["peer"] if importlib.util.find_spec("torch") else [])
  results = {side: sampler._run_child(args, "tiny", "sampler", side) for side in sides}
  assert all(r["seconds"] > 0 for r in results.values())
  assert results["stream"]["step_bytes"] > 0
