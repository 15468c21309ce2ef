"""How the app is hosted: the app's settings, start-up (speed mode, warm-up), ZeroGPU's GPU function,
the Ray Serve worker pool, and the GPU tiers a Space may pick.
May import: kontext.sessions and everything below it.
"""

from kontext.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "config": "Settings browser_secret storage_note parse_auth", "startup": "Startup", "zerogpu": "turn_seconds",
})
