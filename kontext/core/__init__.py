"""Pure values and rules, no model: the edit history tree, parameter checks, image
decoding and checks, PNG metadata, masks, drift, resolution buckets, composing references, TOML reading.
May import: kontext.errors (nothing else of kontext).
"""

from kontext.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "history": "History Node", "params": "params", "images": "images MAX_PIXELS", "compose": "ROLES",
    "drift": "DELTA_E_HIGH SSIM_LOW", "masks": "coverage", "atomic": "write_atomic",
})
