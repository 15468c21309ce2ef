"""What lands on disk or leaves the app as a file: the durable session store, export ZIPs and their
import, contact sheets, read-only share links, mirroring to a dataset.
May import: kontext.core, kontext.errors.
"""

from kontext.lazy import lazy_exports

_EXPORTS = {
    "Store": "store",
    "check_key": "store",
    "ANIMATION": "export",
    "CONTACT_SHEET": "export",
    "file_name": "export",
    "select": "export",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
