"""Every public endpoint is described, parameter by parameter, and the README says the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from kontext.core.params import REAL_PROFILE
from kontext.hosting.config import Settings
from kontext.sessions.session import Sessions
from ui import apidoc, build_ui

README = Path(__file__).resolve().parent.parent / "README.md"
START = "<!-- api-reference: start (scripts/api_reference.py) -->"
END = "<!-- api-reference: end -->"


@pytest.fixture(scope="module")
def demo(engine, tmp_path_factory):
    from kontext.files.store import Store

    data = tmp_path_factory.mktemp("apidoc")
    return build_ui(Sessions(engine, Store(data / "sessions")), Settings(model="tiny", data_dir=data))


def test_every_public_parameter_has_its_description(demo):
    from gradio.utils import get_function_description

    endpoints = demo.get_api_info()["named_endpoints"]
    public = {name.lstrip("/") for name in endpoints}
    texts = apidoc.docs(REAL_PROFILE)
    assert public == set(texts), "an endpoint without a text in ui/apidoc.py, or a text for none"
    for fn in demo.fns.values():
        if fn.api_name not in public:
            continue
        params = [p["parameter_name"] for p in endpoints["/" + fn.api_name]["parameters"]]
        assert params == list(texts[fn.api_name].args), fn.api_name
        summary, described, _ = get_function_description(fn.fn)  # what gradio's MCP server reads
        assert summary and all(described[p] for p in params), (fn.api_name, described)


def test_texts_carry_the_served_models_limits(engine):
    tiny = apidoc.docs(engine.profile)["edit"].args
    real = apidoc.docs(REAL_PROFILE)["edit"].args
    assert "default, 4" in tiny["steps"] and "default, 28" in real["steps"]
    assert "from 32 to 1024" in tiny["width"] and "from 256 to 2048" in real["width"]


def test_the_readme_lists_the_endpoints_as_described():
    text = README.read_text("utf-8")
    assert START in text and END in text
    section = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert section == apidoc.markdown(REAL_PROFILE), "run: python scripts/api_reference.py --write"
