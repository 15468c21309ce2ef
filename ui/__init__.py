"""The Gradio Blocks UI. `build_ui(sessions, settings)` lays out the page and wires its events."""

from .app import LAUNCH_KWARGS, build_ui

__all__ = ["LAUNCH_KWARGS", "build_ui"]
