"""The Gradio Blocks UI. `build_ui(sessions, settings)` lays out the page and wires its events."""

from .app import build_ui, launch_kwargs, queue_kwargs

__all__ = ["build_ui", "launch_kwargs", "queue_kwargs"]
