"""The embedded tiny model: a randomly initialised FluxKontextPipeline of the real classes.

Nothing here is downloaded. The tokenizers are built from Python data, the modules from small
configs with a fixed seed; `ensure_tiny_model` saves the pipeline once with `save_pretrained`, and
the engine then loads it with the same `from_pretrained` call it uses for the real model.
Its images are noise: it exists so the whole app and its tests run on a CPU.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

from kontext.env import setting

TINY_ID = "tiny"
# Bump when the configs below change, so an old cache folder is not reused.
TINY_REVISION = "tiny-v1"
# Random weights, but every config value fixed: same revision -> same weights on every machine.
_WEIGHT_SEED = 0


def default_cache_dir() -> Path:
    base = setting("CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "kontext-playground"
    )
    return Path(base) / TINY_REVISION


def _tokenizers():
    from transformers import CLIPTokenizer, T5TokenizerFast

    chars = [c for c in string.printable if not c.isspace()]
    # CLIP: byte-level BPE with no merges, so every character is its own token.
    clip_vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        clip_vocab.setdefault(c, len(clip_vocab))
        clip_vocab.setdefault(c + "</w>", len(clip_vocab))
    clip = CLIPTokenizer(vocab=clip_vocab, merges=[], model_max_length=77)
    # T5: a unigram vocabulary of single characters (with and without the word-start marker).
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in chars] + [("\u2581" + c, -2.5) for c in chars]
    t5 = T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=512)
    return clip, t5


def build_tiny_pipeline():
    """Build the tiny pipeline in memory (about 0.2 M parameters)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxKontextPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    clip_tok, t5_tok = _tokenizers()
    torch.manual_seed(_WEIGHT_SEED)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        guidance_embeds=True, axes_dims_rope=(4, 6, 6),
    )
    # Four blocks give the real scale factor of 8, so sizes behave as with FLUX.1's VAE.
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4,
        scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False,
    )
    clip = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        projection_dim=32, vocab_size=len(clip_tok), max_position_embeddings=77,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    ))
    t5 = T5EncoderModel(T5Config(
        d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2, feed_forward_proj="gated-gelu",
        vocab_size=len(t5_tok), pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    ))
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
    )
    return FluxKontextPipeline(
        scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=clip_tok,
        text_encoder_2=t5, tokenizer_2=t5_tok, transformer=transformer,
    )


def ensure_tiny_model(cache_dir: str | Path | None = None) -> Path:
    """Write the tiny pipeline to `cache_dir` once; return the folder `from_pretrained` reads."""
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    if (folder / "model_index.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Save into a temporary sibling and rename, so a crash never leaves a half-written model.
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    build_tiny_pipeline().save_pretrained(tmp, safe_serialization=True)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process won the race; its copy is identical
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return folder
