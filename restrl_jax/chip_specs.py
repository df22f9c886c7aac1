"""Vendor figures of one accelerator chip: dense bf16 peak and HBM bandwidth, per JAX device.

`for_device_kind(jax.devices()[0].device_kind)` finds a chip by the name JAX reports ("NVIDIA
H100 80GB HBM3", "TPU v5 lite", ...); None for a CPU or a chip not listed here. The hardware
presets (`mesh_presets`) take their figures from this table, and the accelerator bench
(bench/accelerator.py) divides measured rates by them (MFU, fraction of the HBM roofline).
Imports nothing beyond the standard library.
"""
from __future__ import annotations

from typing import NamedTuple


class ChipSpec(NamedTuple):
  name: str
  peak_bf16_flops: float     # dense (no 2:4 sparsity) bf16 matmul FLOP/s per JAX device
  hbm_bytes_per_s: float     # memory bandwidth per JAX device, bytes/s


# NVIDIA datasheets (dense = the sparse figure / 2); Cloud TPU system architecture pages (a v4 or
# v5p chip is one JAX device, megacore)
CHIPS: dict[str, ChipSpec] = {c.name: c for c in (
    ChipSpec("H100 SXM", 989e12, 3.35e12),
    ChipSpec("H100 PCIe", 756e12, 2.0e12),
    ChipSpec("H100 NVL", 835e12, 3.9e12),
    ChipSpec("H200", 989e12, 4.8e12),
    ChipSpec("H200 NVL", 835e12, 4.8e12),
    ChipSpec("A100 80GB", 312e12, 2.0e12),
    ChipSpec("TPU v4", 275e12, 1.2e12),
    ChipSpec("TPU v5e", 197e12, 8.19e11),
    ChipSpec("TPU v5p", 459e12, 2.765e12),
)}

# (words that must all appear in the lower-cased device_kind, chip), most specific first: JAX
# reports "NVIDIA H100 80GB HBM3" for the SXM card, "NVIDIA A100-SXM4-80GB" / "NVIDIA A100 80GB
# PCIe", "TPU v5 lite" for a v5e and "TPU v5p" (older releases: "TPU v5") for a v5p.
_KIND_WORDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("h100", "pcie"), "H100 PCIe"),
    (("h100", "nvl"), "H100 NVL"),
    (("h100",), "H100 SXM"),
    (("h200", "nvl"), "H200 NVL"),
    (("h200",), "H200"),
    (("a100", "80gb"), "A100 80GB"),
    (("tpu v4",), "TPU v4"),
    (("tpu v5 lite",), "TPU v5e"),
    (("tpu v5e",), "TPU v5e"),
    (("tpu v5",), "TPU v5p"),
)


def for_device_kind(device_kind: str) -> ChipSpec | None:
  """The chip JAX names `device_kind`, None when it is not in the table (CPU, other chips)."""
  kind = device_kind.lower()
  return next((CHIPS[name] for words, name in _KIND_WORDS if all(w in kind for w in words)),
              None)
