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
