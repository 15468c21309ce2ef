"""Cheap live previews of the predicted result: the x0 estimate, shown through a linear colour map.

What to show: the state after step i is still mostly noise early on. A flow-matching step moves the
state along the predicted velocity v, x_next = x + (sigma_next - sigma) * v, and the state is
x = (1 - sigma) * x0 + sigma * noise with v = noise - x0, so x0 = x - sigma * v: an estimate of the
final latents at every step, from what the step computes anyway. `EstimateTap` keeps it (one latent).
The old view, the state itself, stays available as preview mode "noisy" (for debugging a sampler).

How to show it: a full VAE decode per preview would cost as much as a denoising step at 1 MP; a
per-pixel linear projection of the latents costs nothing and shows colours and layout well. Instead
of shipping constants for one VAE we fit the map once, by encoding a small synthetic picture with
the loaded VAE and solving a least-squares problem, so it fits the tiny model and the real one alike.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from PIL import Image

PREVIEW_MODES = ("estimate", "noisy")  # the predicted result, or the current (noisy) state


class EstimateTap:
    """Keeps the x0 estimate of the scheduler's last step, when asked to (`keep`).

    Wraps the `step` method of this one scheduler instance (a FlowMatchEulerDiscreteScheduler, as
    FLUX uses): the pipeline calls step(v, t, x) once per step, and sigma is the scheduler's own."""

    def __init__(self, scheduler: Any):
        self.keep = False
        self._estimate: Any = None
        inner = scheduler.step

        def step(model_output: Any, timestep: Any, sample: Any, *args: Any, **kwargs: Any) -> Any:
            out = inner(model_output, timestep, sample, *args, **kwargs)
            if self.keep and kwargs.get("per_token_timesteps") is None:
                sigma = scheduler.sigmas[scheduler.step_index - 1]  # step() has moved the index on
                self._estimate = sample.float() - sigma.to(sample.device).float() * model_output.float()
            return out

        scheduler.step = step

    @classmethod
    def attach(cls, pipe: Any) -> EstimateTap | None:
        """A tap on `pipe`'s scheduler, or None for a scheduler whose step is not a flow-matching one."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        sched = getattr(pipe, "scheduler", None)
        return cls(sched) if isinstance(sched, FlowMatchEulerDiscreteScheduler) else None

    def take(self) -> Any:
        """The last estimate (packed latents, float32), once; None if there is none."""
        est, self._estimate = self._estimate, None
        return est


class LatentPreviewer:
    def __init__(self, pipe: Any):
        self.pipe = pipe
        self._weights: Any = None  # (C + 1, 3) torch tensor, on the CPU
        self._on: dict[Any, Any] = {}  # the same, on each device previews were made on
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
        """An RGB preview of packed FLUX latents for an output of `width` x `height`.

        Computed where the latents are (on the GPU while an edit runs there): only the small 8-bit
        image, one pixel per latent cell, is copied to the host."""
        import torch

        with self._lock:
            if self._weights is None:
                self._weights = self._fit()
            weights = self._on.get(latents.device)
            if weights is None:
                weights = self._on[latents.device] = self._weights.to(latents.device)
        pipe = self.pipe
        with torch.inference_mode():
            z = pipe._unpack_latents(latents[:1].detach(), height, width, pipe.vae_scale_factor).float()
            z = z / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
            c, gh, gw = z.shape[1:]
            flat = torch.cat([z[0].reshape(c, -1).T, torch.ones(gh * gw, 1, device=z.device)], dim=1)
            rgb = (flat @ weights).clamp(0, 1).mul(255).add(0.5).to(torch.uint8).reshape(gh, gw, 3).cpu().numpy()
        img = Image.fromarray(rgb)
        f = min(1.0, max_side / max(width, height))
        return img.resize((max(1, round(width * f)), max(1, round(height * f))), Image.BILINEAR)
