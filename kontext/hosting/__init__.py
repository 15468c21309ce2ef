"""How the app is hosted: the app's settings, start-up (speed mode, warm-up), ZeroGPU's GPU function,
the Ray Serve worker pool, and the GPU tiers a Space may pick.
May import: kontext.sessions and everything below it.
"""

from kontext.lazy import lazy_exports

_EXPORTS = {
    "Settings": "config",
    "browser_secret": "config",
    "storage_note": "config",
    "parse_auth": "config",
    "Startup": "startup",
    "turn_seconds": "zerogpu",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
