"""How much GPU memory this process may use: the card's, or less when the host caps it.

`--gpu-memory-gb N` (app, bench) makes the process behave as on a card of N GiB: `--mode auto` plans
for N, random-full keeps on the GPU only the parts that fit in N, and the allocator is capped at N
(`torch.cuda.set_per_process_memory_fraction`), so a plan that needs more fails with out-of-memory
instead of quietly borrowing the rest. A host sharing one GPU between two apps uses it the same way,
and `scripts/gpu_bench.sh` runs the 24 GB tier on a larger card with it.
"""

from __future__ import annotations

import logging

from kontext.errors import UserError

log = logging.getLogger("kontext.model.gpumem")
GIB = 2**30


def check_cap(gib: float | None) -> float | None:
    """A cap from a flag or argument: None (no cap) or a number of GiB above 0."""
    if gib is None:
        return None
    if isinstance(gib, bool) or not isinstance(gib, (int, float)) or not 1 <= gib <= 4096:
        raise UserError(f"gpu_memory_gb must be a number of GiB from 1 to 4096, got {gib!r}")
    return float(gib)


def card_bytes(device: str) -> int:
    """The whole card's memory in bytes (CUDA must be available)."""
    import torch

    return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)


def usable_bytes(device: str, cap_gib: float | None = None) -> int:
    """What this process may use: the card's memory, or the cap when that is smaller."""
    total = card_bytes(device)
    return total if cap_gib is None else min(total, int(cap_gib * GIB))


def apply_cap(device: str, cap_gib: float | None) -> None:
    """Cap this process's allocations on `device` at `cap_gib` GiB (nothing when None), and start
    counting peak memory afresh. Refused when the card is smaller than the cap."""
    if cap_gib is None:
        return
    import torch

    total = card_bytes(device)
    if cap_gib * GIB > total:
        raise UserError(f"--gpu-memory-gb {cap_gib:g} is more than this GPU has ({total / GIB:.1f} GiB)")
    dev = torch.device(device)
    index = dev.index if dev.index is not None else torch.cuda.current_device()  # "cuda" alone is refused here
    torch.cuda.set_per_process_memory_fraction(cap_gib * GIB / total, index)
    torch.cuda.reset_peak_memory_stats(index)
    log.info("GPU memory capped at %.1f GiB of this card's %.1f GiB (--gpu-memory-gb)", cap_gib, total / GIB)
