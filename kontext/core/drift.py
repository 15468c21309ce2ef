"""How far a step has moved from the original picture: a cheap colour and structure measure.

Kontext re-encodes the previous output at every turn, so colours shift and details soften over a
long chain. Per step we compare the picture with the chain's original, both scaled down to at most
128 px a side (the step resized to the original's aspect): the mean CIE76 colour difference ΔE in
CIELAB (about 2.3 is a just-noticeable difference; above 10 the colours have clearly moved) and the
structural similarity (SSIM) of the luminance over 8x8 windows (1 = same structure). numpy only, a
few milliseconds per step (measured once per step and remembered). It cannot tell a wanted change
from drift, so the page shows it as a curve over the turns and suggests redoing the path only past
a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

SIDE = 128
DELTA_E_HIGH = 12.0  # past this mean ΔE (or below SSIM_LOW) the page suggests "Redo path as one edit"
SSIM_LOW = 0.5


@dataclass(frozen=True)
class Drift:
    delta_e: float  # mean CIE76 ΔE
    ssim: float  # luminance SSIM, -1..1

    @property
    def high(self) -> bool:
        return self.delta_e > DELTA_E_HIGH or self.ssim < SSIM_LOW

    def to_dict(self) -> dict[str, float]:
        return {"delta_e": round(self.delta_e, 2), "ssim": round(self.ssim, 4)}


def _small(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(img.convert("RGB").resize(size, Image.BOX), np.float64) / 255.0


def _lab(rgb: np.ndarray) -> np.ndarray:
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])  # D65 white
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def _windows(y: np.ndarray, k: int = 8) -> np.ndarray:
    h, w = (y.shape[0] // k) * k, (y.shape[1] // k) * k
    return y[:h, :w].reshape(h // k, k, w // k, k).swapaxes(1, 2).reshape(-1, k * k)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    wa, wb = _windows(a), _windows(b)
    ma, mb = wa.mean(1), wb.mean(1)
    va, vb = wa.var(1), wb.var(1)
    cov = ((wa - ma[:, None]) * (wb - mb[:, None])).mean(1)
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    return float(s.mean())


def measure(original: Image.Image, image: Image.Image) -> Drift:
    """The step `image` against the chain's `original`."""
    w, h = original.size
    f = min(1.0, SIDE / max(w, h))
    size = (max(8, round(w * f)), max(8, round(h * f)))
    a, b = _small(original, size), _small(image, size)
    delta_e = float(np.sqrt(((_lab(a) - _lab(b)) ** 2).sum(-1)).mean())
    lum = np.array([0.299, 0.587, 0.114])
    return Drift(delta_e, _ssim(a @ lum, b @ lum))
