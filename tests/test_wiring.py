"""ui/events.py inputs_by_name: a handler's inputs are found on the page by its parameters' names."""

from types import SimpleNamespace

import pytest

from ui.events import inputs_by_name


def test_inputs_follow_the_handlers_parameters_by_name():
    page = SimpleNamespace(key="K", prompt="P", seed="S", other="O")

    def handler(key, seed, prompt, mode="edit", profile=None):
        return key, seed, prompt

    assert inputs_by_name(handler, page) == ["K", "S", "P"]  # the handler's order, not the page's


def test_a_parameter_the_page_lacks_is_an_error_not_a_shifted_input():
    def handler(key, sede):  # a typo must not wire another component in its place
        return key

    with pytest.raises(AttributeError, match="sede"):
        inputs_by_name(handler, SimpleNamespace(key="K", seed="S"))


def test_a_live_streams_errors_reach_the_viewer_in_words_and_its_bugs_the_log(caplog):
    """friendly() wraps async generators too (a live link's stream): a UserError keeps its words, any
    other exception is logged with an id and shown as "something went wrong" without internals."""
    import asyncio
    import inspect

    import gradio as gr

    from kontext.errors import UserError
    from ui.events import friendly

    async def stream(what):
        yield 1
        raise what

    async def run(what):
        seen = []
        with pytest.raises(gr.Error) as err:
            async for x in friendly(stream)(what):
                seen.append(x)
        return seen, err.value

    assert inspect.isasyncgenfunction(friendly(stream))  # gradio streams it as one
    seen, err = asyncio.run(run(UserError("share: that link has ended")))
    assert seen == [1] and err.message == "share: that link has ended"
    with caplog.at_level("ERROR"):
        seen, err = asyncio.run(run(RuntimeError("secret path /srv/x")))
    assert seen == [1] and err.message.startswith("Something went wrong") and "/srv/x" not in err.message
    assert "secret path /srv/x" in caplog.text  # the traceback is in the log


def test_the_pages_variations_are_checked_in_words(engine):
    """The page's own edit endpoint (clients can call it too) refuses a bad count as the API does,
    instead of truncating 2.5 or failing on "two" as a bug."""
    from kontext.errors import UserError
    from ui.events import options

    assert options(engine.profile, "random", None, None, None, None, variations=3).variations == 3
    assert options(engine.profile, "random", None, None, None, None, variations=None).variations == 1
    for bad in ("two", 2.5, 0, 5):
        with pytest.raises(UserError, match="variations must be a whole number from 1 to 4"):
            options(engine.profile, "random", None, None, None, None, variations=bad)
