"""What the app runs on a GPU of each size, what that needs installed, and what it should cost.

`plan_for(gib)` is `--mode auto`'s choice (kontext/model/speed.py `choose_low_memory`; eager bf16 on
ZeroGPU) with the packages it imports, the parts it keeps on the GPU and the expected peak memory
of a 1 MP edit. `python -m kontext doctor --gpu-memory-gb N` prints it for a GPU the host does not
have, and the README's tier table is written from `TIERS` (scripts/tier_table.py), so the two agree.

Peak memory is estimated from the parts' sizes (FLUX.1 Kontext [dev] in bf16) plus activations;
seconds per edit are estimated from a measured H200 edit scaled by each card's dense bf16 rate.
Rows measured on a GPU say so (`measured`).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from kontext.model.speed import SpeedOptions, choose_low_memory

# GiB of each part in bf16 (parameters x 2 bytes, from a build of random-full on the meta device).
TRANSFORMER_GIB, T5_GIB, SMALL_PARTS_GIB = 22.2, 8.9, 0.4  # CLIP-L and the VAE together
INT8_TRANSFORMER_GIB = 11.3  # linear weights in int8 with their scales, the rest in bf16
ACTIVATIONS_GIB = 2.4  # a 1 MP edit (8192 image + 512 text tokens), bf16: the H200 run's 33.85 GiB peak less the parts
# Distributions each speed feature imports, beyond what every install has.
FEATURE_PACKAGES = {"quantize": "torchao", "attention_hub": "kernels", "zerogpu": "spaces"}
IMPORT_NAMES = {"torchao": "torchao", "kernels": "kernels", "spaces": "spaces"}
H200_EAGER_S = 10.65  # a whole 1024x1024 edit, 28 steps, eager bf16, on an H200 (989 dense bf16 TFLOP/s): BENCHMARKS.md
H200_TFLOPS = 989


@dataclass(frozen=True)
class Plan:
    gpu_gib: float
    zerogpu: bool
    speed: SpeedOptions
    reason: str

    @property
    def packages(self) -> tuple[str, ...]:
        """Distributions this plan imports beyond the base install, in the order they are needed."""
        need = []
        if self.zerogpu:
            need.append(FEATURE_PACKAGES["zerogpu"])
        if self.speed.quantize:
            need.append(FEATURE_PACKAGES["quantize"])
        if self.speed.attention and self.speed.attention.endswith("_hub"):
            need.append(FEATURE_PACKAGES["attention_hub"])
        return tuple(need)

    @property
    def on_gpu(self) -> str:
        """Which parts live on the GPU during an edit, in words."""
        transformer = "the transformer in int8" if self.speed.quantize == "int8" else "the transformer"
        return {
            "none": "every part (transformer, T5-XXL and CLIP text encoders, VAE), all the time",
            "model": f"one part at a time ({transformer}, or the T5-XXL encoder), moved in from CPU memory per use",
            "group": f"one layer group at a time ({transformer} streamed from CPU memory while it runs)",
            "sequential": "one layer at a time, moved in from CPU memory per use",
        }[self.speed.offload]

    @property
    def peak_gib(self) -> float:
        """Expected peak GPU memory of a 1 MP edit, GiB (an estimate from the parts' sizes)."""
        tr = INT8_TRANSFORMER_GIB if self.speed.quantize == "int8" else TRANSFORMER_GIB
        if self.speed.quantize == "fp8":
            tr = TRANSFORMER_GIB / 2 + 0.5
        if self.speed.offload == "none":
            return round(tr + T5_GIB + SMALL_PARTS_GIB + ACTIVATIONS_GIB, 1)
        if self.speed.offload == "model":
            return round(max(tr, T5_GIB) + ACTIVATIONS_GIB, 1)
        return round(ACTIVATIONS_GIB + 1.0, 1)  # group/sequential: a few layers beside the activations


def plan_for(gpu_gib: float, zerogpu: bool = False) -> Plan:
    """What `--mode auto` runs on a GPU of `gpu_gib` GiB (on ZeroGPU: eager bf16, its only auto)."""
    if zerogpu:
        return Plan(gpu_gib, True, SpeedOptions(), "ZeroGPU lends the GPU per edit: eager bf16, everything on it")
    offload, quantize, reason = choose_low_memory(int(gpu_gib * 2**30))
    return Plan(gpu_gib, False, SpeedOptions(offload=offload, quantize=quantize), reason)


def importable(distribution: str) -> bool:
    """Whether the package can be imported here (found on the path; not imported)."""
    return importlib.util.find_spec(IMPORT_NAMES.get(distribution, distribution)) is not None


@dataclass(frozen=True)
class Tier:
    """A GPU size a Space (or a host) offers, the card it stands for, and that card's bf16 rate."""

    gib: float  # what torch reports as the card's memory, about
    hardware: str
    tflops: float | None  # dense bf16 tensor TFLOP/s by the datasheet; None: not estimated
    zerogpu: bool = False
    note: str = ""
    measured_peak_gib: float | None = None  # filled in from BENCHMARKS.md where a GPU run measured it
    measured_s: float | None = None

    @property
    def plan(self) -> Plan:
        return plan_for(self.gib, self.zerogpu)

    def seconds(self) -> tuple[float | None, bool]:
        """(seconds per 1 MP, 28-step edit, measured?) - estimated from the H200 edit when not measured.
        Offload and int8 add about a fifth (weights moved in per edit, dequantized per layer)."""
        if self.measured_s is not None:
            return self.measured_s, True
        if self.tflops is None:
            return None, False
        s = H200_EAGER_S * H200_TFLOPS / self.tflops
        if self.plan.speed.offload != "none" or self.plan.speed.quantize:
            s *= 1.2
        return round(s), False


# The sizes a Space offers (huggingface.co/docs/hub/spaces-gpus and spaces-zerogpu), smallest first.
# GiB as torch reports each card (a "24 GB" L4 reports 22.5 GiB).
TIERS: tuple[Tier, ...] = (
    Tier(15.0, "T4 (16 GB)", None, note="no bf16 tensor cores: very slow; choose 24 GB or more"),
    Tier(22.5, "L4 or A10G (24 GB)", 121, note="the H200 run of this plan under a 22 GiB cap failed with torchao "
         "0.17's default int8 tensors; fixed (version 2 tensors), not yet measured again"),
    Tier(45.0, "L40S (48 GB)", 362),
    Tier(47.5, "ZeroGPU large (48 GB, half an RTX PRO 6000)", None, zerogpu=True),
    Tier(69.5, "ZeroGPU large on an H200 slice (70 GB, 60 of 132 SMs)", H200_TFLOPS * 60 / 132, zerogpu=True),
    Tier(79.3, "A100 (80 GB)", 312),
    Tier(95.0, "ZeroGPU xlarge (96 GB, a whole RTX PRO 6000)", None, zerogpu=True),
    Tier(140.4, "H200 (141 GB)", H200_TFLOPS, measured_peak_gib=33.85, measured_s=H200_EAGER_S),
)
