"""Cheap live previews: a linear map from latent channels to RGB, fitted to the model's own VAE.

A full VAE decode per preview would cost as much as a denoising step at 1 MP; a per-pixel linear
projection of the latents costs nothing and shows colours and layout well. Instead of shipping
constants for one VAE we fit the map once, by encoding a small synthetic picture with the loaded
VAE and solving a least-squares problem, so it fits the tiny model and the real one alike.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from PIL import Image


class LatentPreviewer:
    def __init__(self, pipe: Any):
        self.pipe = pipe
        self._weights: Any = None  # (C + 1, 3) torch tensor
        self._lock = threading.Lock()

    def _fit(self) -> Any:
        import torch

        vae = self.pipe.vae
        scale = self.pipe.vae_scale_factor
        side = 32 * scale  # a 32x32 latent grid gives 1024 samples, plenty for C+1 unknowns
        rng = np.random.default_rng(0)
        # Smooth random colour fields plus flat patches: the kinds of regions photos have.
        low = rng.random((6, 6, 3))
        img = np.asarray(Image.fromarray((low * 255).astype(np.uint8)).resize((side, side), Image.BICUBIC))
        x = torch.from_numpy(img.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
        # With offloading the VAE's weights sit in CPU memory until a hook moves them: encode on the
        # pipeline's execution device, which is where the hook puts them.
        device = getattr(self.pipe, "_execution_device", None) or next(vae.parameters()).device
        with torch.inference_mode():
            z = vae.encode(x.to(device, vae.dtype)).latent_dist.mode().float().cpu()
        c = z.shape[1]
        target = np.asarray(Image.fromarray(img).resize((z.shape[3], z.shape[2]), Image.BOX), np.float32) / 255.0
        a = torch.cat([z[0].reshape(c, -1).T, torch.ones(z.shape[2] * z.shape[3], 1)], dim=1)
        b = torch.from_numpy(target.reshape(-1, 3))
        return torch.linalg.lstsq(a, b).solution  # (C + 1, 3)

    def __call__(self, latents: Any, width: int, height: int, max_side: int = 512) -> Image.Image:
        """An RGB preview of packed FLUX latents for an output of `width` x `height`."""
        import torch

        with self._lock:
            if self._weights is None:
                self._weights = self._fit()
        pipe = self.pipe
        with torch.inference_mode():
            z = pipe._unpack_latents(latents[:1].detach(), height, width, pipe.vae_scale_factor).float().cpu()
            z = z / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
            c, gh, gw = z.shape[1:]
            flat = torch.cat([z[0].reshape(c, -1).T, torch.ones(gh * gw, 1)], dim=1)
            rgb = (flat @ self._weights).clamp(0, 1).reshape(gh, gw, 3).numpy()
        img = Image.fromarray((rgb * 255 + 0.5).astype(np.uint8))
        f = min(1.0, max_side / max(width, height))
        return img.resize((max(1, round(width * f)), max(1, round(height * f))), Image.BILINEAR)
