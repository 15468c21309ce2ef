"""Kontext Playground: multi-turn image editing with FLUX.1 Kontext [dev], without a UI."""

__version__ = "0.1.0"
