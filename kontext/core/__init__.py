"""Pure values and rules, no model: the edit history tree, parameter checks, image
decoding and checks, PNG metadata, masks, drift, resolution buckets, composing references, TOML reading.
May import: kontext.errors (nothing else of kontext).
"""

from kontext.lazy import lazy_exports

_EXPORTS = {
    "History": "history",
    "Node": "history",
    "params": "params",
    "images": "images",
    "MAX_PIXELS": "images",
    "ROLES": "compose",
    "DELTA_E_HIGH": "drift",
    "SSIM_LOW": "drift",
    "coverage": "masks",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
