"""Print the path of one page edit through the code: the frames of kontext/, ui/ and app.py on the
stack when the page's handler hands the turn to a worker thread, when the pipeline is called and when
the step's PNG is written (the figure in ARCHITECTURE.md).

    python scripts/turn_path.py
"""

from __future__ import annotations

import sys
import tempfile
import threading
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def ours(stack: list[traceback.FrameSummary]) -> list[str]:
    keep = []
    for f in stack:
        rel = Path(f.filename).resolve()
        if rel.is_relative_to(ROOT) and not any(rel.is_relative_to(ROOT / d) for d in ("scripts", ".venv")):
            keep.append(f"{rel.relative_to(ROOT)}:{f.name}")
    return keep


def main() -> None:
    import torch
    from PIL import Image

    torch.set_num_threads(1)
    from gradio_client import Client, handle_file

    from apphelpers import running_app
    from kontext.files.store import Store
    from kontext.model.engine import Engine
    from kontext.model.tiny import ensure_tiny_model
    from kontext.sessions.session import Sessions

    seen: dict[str, list[str]] = {}
    store_save = Store.save_image

    def save_image(self, key, png):
        seen.setdefault("PNG written", ours(traceback.extract_stack()))
        return store_save(self, key, png)

    Store.save_image = save_image
    import ui.events

    ui_stream = ui.events.stream

    def stream(*a, **kw):  # the handler's side: the turn itself runs in stream's worker thread
        seen.setdefault("handler streams the turn", ours(traceback.extract_stack()))
        return ui_stream(*a, **kw)

    ui.events.stream = stream
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine.load("tiny", cache_dir=ensure_tiny_model())
        pipe_call = type(engine.pipe).__call__

        def call(pipe, *a, **kw):
            seen.setdefault("pipeline called", ours(traceback.extract_stack()))
            return pipe_call(pipe, *a, **kw)

        type(engine.pipe).__call__ = call
        sessions = Sessions(engine, Store(Path(tmp) / "s"))
        src = Path(tmp) / "in.png"
        Image.effect_noise((64, 64), 40).convert("RGB").save(src)
        with running_app(sessions, Path(tmp)) as url:
            c = Client(url, verbose=False)
            key = c.predict(api_name="/new_session")
            c.predict(key, handle_file(str(src)), api_name="/upload")
            seen.clear()
            c.predict(key, handle_file(str(src)), api_name="/upload")  # the upload's own PNG is not the turn's
            seen.clear()
            calls: dict[str, int] = {}
            ours_dirs = (str(ROOT / "kontext"), str(ROOT / "ui"))

            def count(frame, event, arg):
                if event == "call" and frame.f_code.co_filename.startswith(ours_dirs):
                    name = f"{Path(frame.f_code.co_filename).relative_to(ROOT)}:{frame.f_code.co_name}"
                    calls[name] = calls.get(name, 0) + 1

            threading.setprofile(count)
            sys.setprofile(count)
            c.predict(key, "make it blue", "fixed", 1, 2.5, 2, "Match input", False, "style", "character",
                      "object", api_name="/ui_edit")
            sys.setprofile(None)
            threading.setprofile(None)
    print(f"## calls of our functions during the turn (server side, every thread): {sum(calls.values())} "
          f"calls of {len(calls)} functions")
    for what, frames in seen.items():
        print(f"## {what}: {len(frames)} frames of our code")
        for i, f in enumerate(frames, 1):
            print(f"{i:3d}. {f}")


if __name__ == "__main__":
    main()
