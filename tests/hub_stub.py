"""A stand-in for the Hugging Face Hub on the loopback interface, answering every request the way
the hub answers a gated, a missing or an accessible-but-absent repository (status and X-Error-Code).
Point HF_ENDPOINT at `Stub().url` before huggingface_hub is imported; `stop()` makes it refuse
connections, as an unreachable hub does.
"""

from __future__ import annotations

import http.server
import threading

MODES = {
    "gated-anonymous": (401, "GatedRepo", "Access to model is restricted. You must be authenticated to access it."),
    "gated-no-access": (403, "GatedRepo", "Access to model is restricted and you are not in the authorized list."),
    "missing": (404, "RepoNotFound", "Repository not found"),
    "revision": (404, "RevisionNotFound", "Invalid rev id: nope"),
}


class Stub:
    def __init__(self, mode: str = "gated-anonymous"):
        self.mode = mode
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                status, code, message = MODES[stub.mode]
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
