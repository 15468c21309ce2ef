"""What an MCP client gets back from a tool: each output on its own, images as images, JSON as JSON.

Gradio's MCP server (gradio 6.31) turns every output into content items, but two cases come out as
Python reprs that an agent would have to parse:
- a queued tool with several outputs (edit, reroll, ... : image + history) called without a progress
  token: the client's result tuple is treated as one output and sent as `str(tuple)`;
- a JSON output: sent as `str(dict)`, or as `root={...}` (the repr of gradio's JsonData model) for
  tools that run without the queue.
And with a progress token, gradio's notifications count status messages and carry no total.
`adapt()` fixes these on gradio's server class: it splits the tuple into its outputs and sends JSON
values as JSON text (images keep gradio's own handling: image content plus the image's URL; lists
of files and galleries are sent file by file), and progress is the turn's step of its step count.
It also names the tools: gradio names a tool after its handler function and makes every public
endpoint one; `tool(fn, name)` gives an endpoint's tool another name, or none (the endpoint stays
in the API). So MCP's `edit` is the API's `/edit_variations` (every candidate as an image item),
and `/edit`, which answers with the current candidate only, is no tool.
tests/test_mcp.py checks the result types with the `mcp` client, so a gradio that changes these
methods fails there rather than in front of an agent.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .public import public_link

log = logging.getLogger("kontext.ui")


def _is_file(value: Any) -> bool:
    meta = value.get("meta") if isinstance(value, dict) else None
    return isinstance(meta, dict) and meta.get("_type") == "gradio.FileData"


def _gallery_file(value: Any) -> Any:
    """The file of a gallery item ({"image": FileData, "caption": ...}), else None."""
    image = value.get("image") if isinstance(value, dict) else None
    return image if _is_file(image) else None


def tool(fn: Any, name: str | None) -> Any:
    """Give the MCP tool of an endpoint's handler `name` instead of the function's, or with None
    make the endpoint no tool (adapt() reads it when gradio's MCP server lists its tools)."""
    fn._kontext_tool = name
    return fn


def as_outputs(data: list[Any]) -> list[Any]:
    """Outputs as gradio's content conversion should see them: files as they are (one by one when
    an output is a list of files or a gallery), anything structured as JSON text."""
    out: list[Any] = []
    for value in data:
        if hasattr(value, "model_dump"):  # gradio's JsonData and other pydantic roots
            value = value.model_dump()
        if _is_file(value) or value is None or isinstance(value, str):
            out.append(value)
        elif isinstance(value, list) and value and all(_is_file(v) for v in value):
            out.extend(value)
        elif isinstance(value, list) and value and all(_gallery_file(v) for v in value):
            out.extend(_gallery_file(v) for v in value)  # captions dropped: the JSON names the steps
        else:
            out.append(json.dumps(value, ensure_ascii=False, default=str))
    return out


def progress_of(update: Any, last: float | None) -> tuple[float | None, float | None]:
    """(progress, total) for an MCP progress notification of a job status: a turn's denoising step
    of its step count; 0 of unknown before it (queued, waiting for the GPU). MCP wants progress to
    grow, so an update that would not advance it gives (None, None): not sent."""
    unit = next((u for u in (update.progress_data or []) if u.index is not None), None)
    if unit is not None and unit.length:
        progress, total = float(unit.index), float(unit.length)
    else:
        progress, total = 0.0, None
    if last is not None and progress <= last:
        return None, None
    return progress, total


def adapt() -> bool:
    """Install the fix on gradio's MCP server class (once). False if this gradio has no MCP server
    or its methods are not the ones this module knows; the tools then work with gradio's output."""
    try:
        from gradio.mcp import GradioMCPServer
    except ImportError:
        return False
    if getattr(GradioMCPServer, "_kontext_adapted", False):
        return True
    post = getattr(GradioMCPServer, "postprocess_output_data", None)
    tools = getattr(GradioMCPServer, "get_tool_to_endpoint", None)
    if post is None or tools is None or not all(hasattr(GradioMCPServer, m) for m in (
            "_execute_tool_without_progress", "_execute_tool_with_progress", "_format_progress_message",
            "get_block_fn_from_endpoint_name")):
        log.warning("gradio's MCP server has changed: tool results are sent as gradio makes them")
        return False
    GradioMCPServer._kontext_gradio_post, GradioMCPServer._kontext_gradio_tools = post, tools
    GradioMCPServer.get_tool_to_endpoint = _get_tool_to_endpoint
    GradioMCPServer._execute_tool_without_progress = _execute_tool_without_progress
    GradioMCPServer._execute_tool_with_progress = _execute_tool_with_progress
    GradioMCPServer.postprocess_output_data = _postprocess_output_data
    GradioMCPServer._kontext_adapted = True
    return True


# The methods adapt() puts on gradio's MCP server class (`self` is the server).

async def _execute_tool_without_progress(self: Any, job: Any) -> list[Any]:
    from anyio.to_thread import run_sync

    result = await run_sync(job.result)
    # gradio_client returns a tuple for several outputs and the bare value for one.
    return list(result) if isinstance(result, tuple) else [result]


async def _execute_tool_with_progress(self: Any, job: Any, progress_token: str | int) -> list[Any]:
    """Progress notifications with the step count (gradio sends a running count and no total)."""
    context = self.mcp_server.request_context
    last: float | None = None
    output: Any = None
    async for update in job:
        if update.type == "status":
            progress, total = progress_of(update, last)
            if progress is None:
                continue
            await context.session.send_progress_notification(
                progress_token=progress_token, progress=progress, total=total,
                message=self._format_progress_message(update), related_request_id=str(context.request_id))
            last = progress
        elif update.type == "output" and update.final:
            output = update.outputs
            if not update.success:
                raise RuntimeError(": ".join(str(x) for x in (output.get("title"), output.get("error")) if x)
                                   or "Error!")
    if job.exception():
        raise job.exception()
    return output["data"]


def _postprocess_output_data(self: Any, data: Any, root_url: str) -> Any:
    items = self._kontext_gradio_post(as_outputs(list(data)), root_url)
    public = getattr(self.blocks, "kontext_public", None)
    if public is not None:  # links by public name (ui/public.py), never the server's paths
        for item in items:
            if getattr(item, "type", None) == "text" and "/gradio_api/file=" in item.text:
                label, sep, url = item.text.rpartition(": ")
                item.text = f"{label}{sep}{public_link(url, Path(public).resolve())}"
    return items


def _get_tool_to_endpoint(self: Any) -> dict[str, str]:
    """gradio's tool names, with those tool() set: renamed in place, or left out."""
    named: dict[str, str] = {}
    for name, endpoint in self._kontext_gradio_tools().items():
        block_fn = self.get_block_fn_from_endpoint_name(endpoint)
        fn = getattr(block_fn, "fn", None)
        if not hasattr(fn, "_kontext_tool"):
            named.setdefault(name, endpoint)
        elif fn._kontext_tool:
            named[self.tool_prefix + fn._kontext_tool] = endpoint
    return named
