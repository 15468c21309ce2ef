"""A session's history and its turns: loading and caching histories, planning a turn with every
rule, running it through the queue and committing it, session files, sharing, export and import, and
the admission queue (one record of the turns that run or wait).
May import: kontext.showcase, kontext.model, kontext.files, kontext.core.
"""

from kontext.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "session": "Sessions EditOptions SEED_MODES DRIFT_TURNS", "admission": "TurnQueue",
    "keeper": "SessionRemoved", "live": "Change Changes",
})
