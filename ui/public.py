"""Session images by their public names, at /images/<name>, for clients that get a link as text (MCP).

Gradio's own file links carry the file's absolute server path (`/gradio_api/file=/data/public/<name>`);
an agent reading the MCP result's "Image URL" would see where the data folder lives. This route
serves the same files (the store's public folder: hard links named by random uuids, see
kontext.files.store) by name only, behind the same login as gradio's file route when the app has
one. ui/mcp.py rewrites the links it sends to it.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from fastapi import HTTPException, Request
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute

ROUTE = "/images"
NAME = re.compile(r"[0-9a-f]{32}\.(?:png|jpg)")  # a stored image or its thumbnail (kontext.files.store)


def image_route(public_dir: Path) -> APIRoute:
    """The route, to give gradio's app at creation (launch's app_kwargs routes)."""

    async def image(name: str, request: Request) -> FileResponse:
        if not await _signed_in(request):
            raise HTTPException(status_code=401, detail="Not authenticated")
        path = public_dir / name
        if not NAME.fullmatch(name) or not path.is_file():
            raise HTTPException(status_code=404, detail="No such image")
        return FileResponse(path, media_type="image/png" if name.endswith(".png") else "image/jpeg")

    return APIRoute(ROUTE + "/{name}", image, methods=["GET"], include_in_schema=False)


async def _signed_in(request: Request) -> bool:
    """gradio's login check for its file route: open without auth, else a logged-in user."""
    app = request.app
    if getattr(app, "auth", None) is None and getattr(app, "auth_dependency", None) is None:
        return True
    if app.auth_dependency is not None:
        user = app.auth_dependency(request)
        return (await user if inspect.isawaitable(user) else user) is not None
    token = (request.cookies.get(f"access-token-{app.cookie_id}")
             or request.cookies.get(f"access-token-unsecure-{app.cookie_id}"))
    return app.tokens.get(token) is not None


def public_link(url: str, public_dir: Path) -> str:
    """A gradio file link to a file of the public folder as an /images link; any other link as it is."""
    root, sep, path = url.partition("/gradio_api/file=")
    if not sep:
        return url
    from urllib.parse import unquote

    file = Path(unquote(path)).resolve()
    if file.parent != public_dir or not NAME.fullmatch(file.name):
        return url
    return f"{root}{ROUTE}/{file.name}"
