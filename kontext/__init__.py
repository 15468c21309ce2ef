"""Kontext Playground: multi-turn image editing with FLUX.1 Kontext [dev], without a UI."""

from kontext.quiet import silence_known_warnings

__version__ = "0.1.0"

silence_known_warnings()  # before anything imports transformers (see kontext/quiet.py)
