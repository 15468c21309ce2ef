"""FLUX.1 Kontext [dev]'s architecture with random weights, built in memory: nothing downloaded.

Two built-in model names besides "tiny":
- `random-full`: the real component configs (12 B transformer, T5-XXL, CLIP-L, the 16-channel VAE).
  Random weights do not change the arithmetic, so its timings and memory are the real model's; it
  needs a CUDA GPU with about 40 GB. Used by `python -m kontext bench` and by the app to run the whole
  playground at full size without the gated weights.
- `random-small`: the same classes and the same full-size behaviour (1 MP images, 28 steps, the real
  model's size limits) with every layer narrowed, so a CPU runs the full-size code path in seconds.

Both are seeded: a build on the same kind of device gives the same weights every time, so outputs can
be compared (the revision names the device kind). Their images are noise, like the tiny model's.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("kontext.model.randomfull")
RANDOM_FULL = "random-full"
RANDOM_SMALL = "random-small"
RANDOM_MODELS = (RANDOM_FULL, RANDOM_SMALL)
RANDOM_REVISION = "random-seed0"


def random_full_configs() -> dict[str, dict[str, Any]]:
    """FLUX.1 Kontext [dev]'s component configs (transformer, VAE, T5-XXL, CLIP-L), no weights."""
    return {
        "transformer": dict(guidance_embeds=True),  # every other default is FLUX.1's: 19 + 38 blocks
        "vae": dict(in_channels=3, out_channels=3, latent_channels=16,
                    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                    block_out_channels=(128, 256, 512, 512), layers_per_block=2, scaling_factor=0.3611,
                    shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False),
        "t5": dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, feed_forward_proj="gated-gelu",
                   vocab_size=32128, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0),
        "clip": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     projection_dim=768, vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu",
                     bos_token_id=0, eos_token_id=1, pad_token_id=1),
    }


def random_small_configs() -> dict[str, dict[str, Any]]:
    """random-full's configs with the widths and depths cut down; vocabularies and channel counts of
    the latents (16) stay, so tokenizing, packing and the VAE's scaling are the full model's."""
    cfg = random_full_configs()
    cfg["transformer"].update(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                              joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6))
    # The VAE's mid-block attention over 128x128 latent positions took 3 s of a 1 MP CPU edit: off here.
    cfg["vae"].update(block_out_channels=(4, 4, 4, 4), layers_per_block=1, norm_num_groups=4,
                      mid_block_add_attention=False)
    cfg["t5"].update(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=1)
    cfg["clip"].update(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                       projection_dim=32)
    return cfg


def build_random_pipeline(device: str, dtype: Any, configs: dict[str, dict[str, Any]] | None = None) -> Any:
    """A FluxKontextPipeline of the given configs with random weights, every part built on `device`."""
    return _build(dtype, configs or random_full_configs(), lambda name, size: (device, device))[0]


def _build(dtype: Any, cfg: dict[str, dict[str, Any]], where: Any) -> tuple[Any, dict[str, str]]:
    """Build each part where `where(name, bytes)` says: (device that draws its weights, device it stays
    on); returns (pipeline, {part: device that drew it}).

    Each part is seeded on its own, so its weights do not depend on the others or on the order. The
    tokenizers are the tiny model's (built from Python data); their ids fit the real vocabularies.
    """
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from kontext.model.tiny import _tokenizers

    factories = {
        "transformer": lambda: FluxTransformer2DModel(**cfg["transformer"]),
        "vae": lambda: AutoencoderKL(**cfg["vae"]),
        "text_encoder_2": lambda: T5EncoderModel(T5Config(**cfg["t5"])),
        "text_encoder": lambda: CLIPTextModel(CLIPTextConfig(**cfg["clip"])),
    }
    parts: dict[str, Any] = {}
    drawn: dict[str, str] = {}
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(dtype)
        for name, make in factories.items():
            with torch.device("meta"):  # free: only to know the size before choosing where to build
                size = sum(p.numel() * p.element_size() for p in make().parameters())
            drawn[name], keep = where(name, size)
            torch.manual_seed(0)
            with torch.device(drawn[name]):
                parts[name] = make().eval()
            if keep != drawn[name]:
                parts[name].to(keep)
                if drawn[name].startswith("cuda"):
                    torch.cuda.empty_cache()  # give the build's memory back before the next part
    finally:
        torch.set_default_dtype(old)
    clip_tok, t5_tok = _tokenizers()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15)
    return FluxKontextPipeline(scheduler=scheduler, tokenizer=clip_tok, tokenizer_2=t5_tok, **parts), drawn


MARGIN = 2 * 2**30  # the first edit's activations, the allocator's slack


def placer(model: str, device: str, free: Any, capped: bool = False) -> Any:
    """where(part, bytes) -> (device that draws it, device it stays on) for `_build`.

    A part is drawn on `device` while it fits in `free()` bytes of GPU memory with a margin (the CPU
    takes minutes for 17 B parameters), else on the CPU with a warning. Under a GPU memory cap
    (--gpu-memory-gb) every part then moves to CPU memory, where from_pretrained leaves a real model,
    and the speed mode places it within the cap as it would on a smaller card. `free` None: no usable GPU."""

    def where(name: str, size: int) -> tuple[str, str]:
        if free is None or size + MARGIN >= free():
            log.warning("building %s of %s (%.1f GB) in CPU memory: this takes minutes", name, model, size / 1e9)
            return "cpu", "cpu"
        return device, "cpu" if capped else device
    return where


def build_for(model: str, device: str, dtype: Any, capped: bool = False) -> tuple[Any, str]:
    """The pipeline of `model` (one of RANDOM_MODELS), and the revision that names its weights.

    random-full's parts are built on the GPU where they fit in its free memory (initialising 17 B
    parameters on a CPU takes minutes); the speed mode then places them (offload moves them out).
    A part that does not fit, or any part on ZeroGPU (whose main process has no real GPU), is built
    in CPU memory. `capped` (a --gpu-memory-gb cap, kontext/model/gpumem.py): the parts are kept in CPU memory
    for the speed mode to place. CUDA and CPU draw different random numbers, so the revision says which drew them.
    The caller (kontext.model.engine) refuses random-full without a GPU.
    """
    import torch

    from kontext.env import on_zerogpu

    if model == RANDOM_SMALL:
        return build_random_pipeline("cpu", dtype, random_small_configs()), f"{RANDOM_REVISION}-cpu"
    cuda = device.startswith("cuda") and not on_zerogpu()
    free = (lambda: torch.cuda.mem_get_info(torch.device(device))[0]) if cuda else None
    pipe, drawn = _build(dtype, random_full_configs(), placer(model, device, free, capped))
    kinds = {"cpu" if p == "cpu" else "cuda" for p in drawn.values()}
    return pipe, f"{RANDOM_REVISION}-{kinds.pop() if len(kinds) == 1 else 'mixed'}"
