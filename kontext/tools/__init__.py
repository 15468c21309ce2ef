"""The command-line programs (`python -m kontext ...`): edit, replay, bench, loadtest, trial, doctor,
and starting app.py in a process of its own to measure it. May import every other part.
"""

from kontext.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "doctor": "HARDWARE_HINT", "cli": "main",
})
