"""What a visitor is shown first: the example catalog (pictures, instructions, chains) with its
result cache, and the host's branding. May import: kontext.model, kontext.files, kontext.core.
"""

from kontext.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "examples": "Catalog load_catalog ResultCache", "branding": "Branding",
})
