"""Config sections shared by every pipeline config (configs/*.py build on these).

Defaults are the paper's hyper-parameters (docs/method.md); configs/demo.py holds the CPU sizes.
"""
import ml_collections
from ml_collections import config_dict


def model() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      preset="tiny",                              # restrl_jax.models.PRESETS name, or
      hf_path=config_dict.placeholder(str),       # a local Hugging Face folder (wins over preset)
      dtype="float32",
      tokenizer_path=config_dict.placeholder(str),
  ))


def mesh() -> ml_collections.ConfigDict:
  # (data, fsdp, tensor); -1 takes the remaining devices. `preset` (restrl_jax.mesh_presets, e.g.
  # "v5e-16") replaces the shape and turns on remat and bf16 weights. `host_shape`: the mesh over
  # each process's own devices on which evaluate, evaluate_suite, collect_values and decode
  # hold the policy and the value model (each process samples and searches its own problems);
  # None: one device. A preset sets it (tensor over the host's chips).
  return ml_collections.ConfigDict(dict(shape=(1, -1, 1), preset=config_dict.placeholder(str),
                                        host_shape=config_dict.placeholder(tuple)))


def sampling() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      temperature=0.7, top_p=1.0, top_k=0, max_new_tokens=1024, batch_size=16))


def execution() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(num_workers=0, isolation="auto"))


def distributed() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      enabled=False,
      coordinator_address=config_dict.placeholder(str),
      num_processes=config_dict.placeholder(int),
      process_id=config_dict.placeholder(int)))


def warmstart() -> ml_collections.ConfigDict:
  """The base policy: the shipped demo checkpoint, or SFT on the synthetic train split."""
  return ml_collections.ConfigDict(dict(
      use_shipped=True,                           # copy the shipped policy instead of training
      policy_path=config_dict.placeholder(str),   # an HF folder to use instead of the shipped one
      tokenizer_path=config_dict.placeholder(str),  # None: the embedded synthetic tokenizer
      init_policy_path=config_dict.placeholder(str),  # continue SFT from this HF folder
      preset="tiny",
      num_train_problems=2000, difficulty="mixed", data_seed=0, max_len=256, pad_multiple=32,
      steps=800, batch_size=32, learning_rate=3e-3, warmup_steps=100, schedule="constant",
      weight_decay=0.0, grad_clip=1.0, seed=config_dict.placeholder(int),   # None: config.seed
      checkpoint_every=200, keep_checkpoints=2, log_every=25, tensorboard=False,
      eval_num_problems=200, eval_samples=5, eval_seed=config_dict.placeholder(int)))


def evaluate() -> ml_collections.ConfigDict:
  """The `evaluate` stage: sample the newest policy on a benchmark and score it in the sandbox."""
  return ml_collections.ConfigDict(dict(
      benchmark="synthetic",                      # restrl_jax.data.registry name
      data_path=config_dict.placeholder(str),     # local file/folder (None: the default source)
      split="test", num_problems=200, num_samples=5, ks=(1, 5), seed=config_dict.placeholder(int), method="policy",
      compare_base=False))  # also sample the base policy: paired gains with their spread


def rest() -> ml_collections.ConfigDict:
  """Stage `rest_grpo` (docs/method.md §4): the ReST outer loop and its data (the paper's values).

  `method`: "rest_grpo" (σ0 filter + partial states), "grpo" (naive: every problem, no partial
  states), "dapo" (naive data + dynamic sampling), "rest_dpo" (chosen = best, rejected = worst).
  """
  return ml_collections.ConfigDict(dict(
      method="rest_grpo", rounds=2,
      # collection: N samples per training problem (§4.1)
      num_samples=5, temperature=0.7, top_p=1.0, top_k=0, max_new_tokens=1024,
      # assembly (§4.2); mode "sample" (default) or "all" (every prefix) for rest_grpo
      sigma0=0.05, r0=0.9, alpha=0.95, beta=0.5, mode="sample", dedup=False, shuffle_seed=42,
      # where a partial state ends: "token" (the first token boundary of the policy's prompt at or
      # after the line's text; default) or "newline" (the paper's: after the line's "\n")
      state_end="token",
      # training problems (restrl_jax.data.registry name, local path, split, limit per set)
      benchmark="synthetic", data_path=config_dict.placeholder(str), split="train",
      num_problems=config_dict.placeholder(int),
      # more training sets, added to `benchmark`'s: names and their files (empty: each name's
      # `<split>` file of the data root)
      extra_benchmarks=(), extra_data_paths=(),
      # evaluation sets held out of training: a training problem whose task text is that of a
      # problem of one of these (their `test` file of the data root, or `held_out_paths`) is dropped
      held_out=(), held_out_paths=(),
      seed=config_dict.placeholder(int), max_steps_per_round=config_dict.placeholder(int),
      checkpoint_every=50, keep_checkpoints=2, tensorboard=True,
      # learning curve: held-out scores before step 1 and every `curve_every` steps (0: off)
      # on `curve_num_problems` problems of `curve_split` (of `benchmark`), samples at T = 0.7
      curve_every=0, curve_split="id_validation", curve_num_problems=100, curve_num_samples=2,
      curve_max_new_tokens=128,
      # ReST-DPO (§4.4; TRL DPOTrainer defaults, the repo's LR)
      dpo_beta=0.1, dpo_label_smoothing=0.0, dpo_learning_rate=2e-5, dpo_pairs_per_step=2,
      dpo_max_completion_tokens=1024))


def grpo() -> ml_collections.ConfigDict:
  """GRPO optimisation of stage `rest_grpo` (docs/method.md §3.1, §4.3; TRL 0.18.2 defaults)."""
  return ml_collections.ConfigDict(dict(
      group_size=8, prompts_per_step=2, epochs=1.0,
      max_prompt_tokens=1024, max_new_tokens=1024, temperature=0.7, top_p=1.0, top_k=0,
      stop_at_fence=False,                       # False: no stop strings, as the paper
      learning_rate=1e-7, schedule="linear", warmup_steps=0, grad_clip=1.0, weight_decay=0.0,
      beta_kl=0.04, kl_estimator="k3", kl_in_loss=True, kl_clamp=config_dict.placeholder(float),
      kl_reward_reduce="sum",
      epsilon=0.2, epsilon_high=config_dict.placeholder(float),   # clip-higher (DAPO: 0.28)
      dual_clip_c=config_dict.placeholder(float), num_iterations=1, old_logprobs="auto",
      policy_loss="ppo-clip", loss_aggregation="token-mean",
      advantage="grpo", advantage_scale="group", advantage_ddof=1, advantage_eps=1e-4,
      symbol_reward=1e-3, trailing_penalty=1e-6,
      dynamic_max_candidate_batches=4, dynamic_min_std=0.0, remat=False,
      # engineering (no effect on the result): micro-batches per update (GRPO and ReST-DPO;
      # whole rows, the full batch's loss normalisation); sampling chunks whose rewards run in
      # the sandbox while the next chunk is generated (1: one sampling call, no overlap)
      grad_accum_steps=1, overlap_chunks=1))


def mcts() -> ml_collections.ConfigDict:
  """Value-target collection (docs/method.md §5) and VM-MCTS decoding + baselines (docs/method.md §7)."""
  return ml_collections.ConfigDict(dict(
      collect_iterations=100, collect_samples=5, collect_width=3, collect_c=0.2,
      decode_iterations=15, decode_samples=5, decode_width=5, decode_c=0.1, eps=0.1,
      batch_trees=8,                              # B trees searched together
      max_steps_factor=4,                         # decoding: loop cap = factor x iterations
      seed=config_dict.placeholder(int),          # None: config.seed
      collect_benchmark="synthetic", collect_data_path=config_dict.placeholder(str),
      collect_split="train", collect_num_problems=200,
      # decoding: methods compared at an equal budget of sampled programs per problem
      decode_methods=("sampling", "best_of_n", "orm_mcts", "vm_mcts"),
      decode_budget=config_dict.placeholder(int),  # None: decode_iterations x decode_samples
      decode_benchmark="synthetic", decode_data_path=config_dict.placeholder(str),
      decode_split="test", decode_num_problems=200))


def value() -> ml_collections.ConfigDict:
  """Value model training (docs/method.md §6): LR 1e-7, 2 epochs, batch 1, 2048 tokens, 95/5 split."""
  return ml_collections.ConfigDict(dict(
      learning_rate=1e-7, epochs=2, batch_size=1, max_length=2048, eval_fraction=0.05,
      min_eval=100, accuracy_tol=0.05, evals=2, weight_decay=0.0, grad_clip=1.0,
      schedule="constant", warmup_steps=0, seed=config_dict.placeholder(int),
      dtype=config_dict.placeholder(str),         # None: config.model.dtype
      kinds=("node", "program"), remat=False, score_batch_size=16, pad_multiple=32,
      keep_checkpoints=2, log_every=50,
      shard=False,                                # train on the config.mesh (FSDP like the policy)
      dedupe=False,                               # one example per distinct (problem, text)
      # "mse": the paper's value model (backbone + scalar head, MSE on the collected values);
      # "implicit_prm": the policy trained with the DPO loss on (correct, wrong) program pairs
      # of the collected programs, states scored by its implicit reward (the implicit_* keys)
      kind="mse",
      implicit_beta=0.1, implicit_learning_rate=1e-4, implicit_steps=750,
      implicit_pairs_per_step=32, implicit_pairs_per_problem=8, implicit_eval_every=50,
      implicit_eval_problems=200, implicit_max_prompt_tokens=1024))


# The paper's Table 1 benchmarks, in its column order (restrl_jax.evaluation.table1).
TABLE1_BENCHMARKS = ("humaneval", "humanevalplus", "mbpp", "mbppplus", "apps", "bigcodebench")


def suite() -> ml_collections.ConfigDict:
  """Stage `evaluate_suite` (docs/method.md §8): the newest policy sampled on each benchmark of
  `benchmarks` (files: `data_paths` in the same order; empty: each one's `test` file of the data
  root), pass@1 of `num_samples` samples at `config.sampling` (the paper: one sample, T = 0.7),
  and the Table-1 row with the paper's Avg. when all six are there. `num_problems` limits every
  benchmark (None: all) but APPS, whose first `apps_num_problems` are taken (APPS-500)."""
  return ml_collections.ConfigDict(dict(
      benchmarks=TABLE1_BENCHMARKS, data_paths=(), num_problems=config_dict.placeholder(int),
      apps_num_problems=500, num_samples=1, method="policy",
      seed=config_dict.placeholder(int)))


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.workdir = config_dict.placeholder(str)
  # a data root (restrl_jax/data/data_root.py, docs/data.md): every stage's unset data path is
  # its file there, checked before any stage runs; a section's own data_path wins
  c.data_dir = config_dict.placeholder(str)
  c.seed = 0   # every section's unset seed (SEED_FIELDS) is this one
  c.quick = False
  c.stages = ()
  c.model = model()
  c.mesh = mesh()
  c.sampling = sampling()
  c.execution = execution()
  c.distributed = distributed()
  c.evaluate = evaluate()
  c.required_fields = ()
  c.required_paths = ()
  return c


# The seed fields of each section: left unset (None) they take the top-level `config.seed`, so
# `--config.seed=1` changes every stage's randomness; a section's own value wins.
SEED_FIELDS = {"warmstart": ("seed", "eval_seed"), "evaluate": ("seed",), "rest": ("seed",),
               "mcts": ("seed",), "value": ("seed",), "suite": ("seed",)}


def fill_seeds(config: ml_collections.ConfigDict, name: str,
               section: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`section` (config.<name> or its defaults) with unset seed fields set to `config.seed`."""
  for field in SEED_FIELDS.get(name, ()):
    if field in section and section[field] is None:
      section[field] = int(config.get("seed", 0))
  return section


# The sections a config may add to `base()` (the stages that read them fill what a partial
# section leaves out from these defaults).
OPTIONAL_SECTIONS = {"warmstart": warmstart, "rest": rest, "grpo": grpo, "mcts": mcts,
                     "value": value, "suite": suite}


def known_keys() -> ml_collections.ConfigDict:
  """Every key a config may have: `base()` with every optional section at its defaults."""
  c = base()
  for name, defaults in OPTIONAL_SECTIONS.items():
    c[name] = defaults()
  return c
