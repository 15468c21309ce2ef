"""All sessions of one app, assembled from parts with one job each:

- keeper.py: where histories are kept (store, bounded cache, per-session locks, sweep, undo/redo/jump)
- uploads.py: uploaded pictures, references and masks
- planning.py: a turn planned once with every rule (`EditOptions`, `Turn`)
- running.py: the queue, the run and the commit of a planned turn
- variants.py: re-roll, refine, redo the path as one edit, re-anchor
- drifting.py: how far a chain drifted, and the page's hint
- transfer.py: share links, export and import
"""

from __future__ import annotations

from kontext.sessions.drifting import DRIFT_TURNS, Drifting
from kontext.sessions.keeper import LOCK_STRIPES, MAX_CACHED, step_dict
from kontext.sessions.planning import SEED_MODES, EditOptions, Turn, recorded_loras, recorded_references
from kontext.sessions.transfer import Transfer
from kontext.sessions.variants import Variants

__all__ = ["DRIFT_TURNS", "LOCK_STRIPES", "MAX_CACHED", "SEED_MODES", "EditOptions", "Sessions", "Turn",
           "recorded_loras", "recorded_references", "step_dict"]


class Sessions(Variants, Drifting, Transfer):
    """All sessions of one app: a store on disk plus the engine that makes the images."""
