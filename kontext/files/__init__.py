"""What lands on disk or leaves the app as a file: the durable session store, export ZIPs and their
import, contact sheets, read-only share links, mirroring to a dataset.
May import: kontext.core, kontext.errors.
"""

from kontext.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "store": "Store check_key", "export": "ANIMATION CONTACT_SHEET file_name select",
})
