"""What a visitor is shown first: the example catalog (pictures, instructions, chains) with its
result cache, and the host's branding. May import: kontext.model, kontext.files, kontext.core.
"""

from kontext.lazy import lazy_exports

_EXPORTS = {
    "Catalog": "examples",
    "load_catalog": "examples",
    "ResultCache": "examples",
    "Branding": "branding",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
