"""An example sets its own seed (fixed) for its own turn; the visitor's seed choice comes back after
it, however the turn ends. A Stop in the tab that runs it cancels the event: gradio drops the turn's
last update and runs the failure handler, which may read the seed state after the turn's generator
has already answered on the server, so the choice must still be there for it (a CI run left the page
on "fixed" when it was not)."""

from gates import held_call
from kontext.files.store import Store
from kontext.hosting.config import Settings
from kontext.sessions.session import Sessions
from ui import build_ui


def page_of(engine, tmp_path, photo):
    sessions = Sessions(engine, Store(tmp_path / "s"))
    demo = build_ui(sessions, Settings(data_dir=tmp_path / "s"))
    key = sessions.new()
    sessions.upload(key, photo, name="photo.png")
    return sessions, demo, key


def handler(demo, name):
    return next(f for f in demo.fns.values() if f.api_name == name)


def seed_outputs(fn):
    """The seed mode radio and the remembered choice (the State right after it in every seed output list)."""
    i = next(i for i, b in enumerate(fn.outputs) if getattr(b, "elem_id", None) == "seed-mode")
    return fn.outputs[i], fn.outputs[i + 1]


def example_turn(demo, key, **kw):
    edit = handler(demo, "ui_edit").fn
    return edit(key=key, shown=None, prompt="an example's turn", seed_mode="fixed", seed=7, guidance=2.5, steps=2,
                size="Match input", seed_before=["random", 0], **kw)


def test_a_finished_example_turn_gives_the_choice_back_and_forgets_it(engine, tmp_path, photo):
    _, demo, key = page_of(engine, tmp_path, photo)
    mode, before = seed_outputs(handler(demo, "ui_edit"))
    last = list(example_turn(demo, key))[-1]
    assert last[mode] == "random" and last[before] is None


def test_a_stopped_example_turn_gives_the_choice_back_and_keeps_it_for_the_failure_handler(engine, tmp_path,
                                                                                         photo):
    sessions, demo, key = page_of(engine, tmp_path, photo)
    mode, before = seed_outputs(handler(demo, "ui_edit"))
    with held_call(engine, lambda: list(example_turn(demo, key))) as out:
        sessions.stop(key)  # the Stop handler's own call
    last = out["result"][-1]
    assert last[mode] == "random" and before not in last  # given back, still remembered
    assert len(sessions.history(key).nodes) == 1  # stopped: nothing stored
    # The failure handler, as the page calls it after its own Stop: it reads the radio as the page still
    # shows it (the example's "fixed": the turn's last update was dropped) and the remembered choice.
    failed = next(f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "failed")
    f_mode, f_before = seed_outputs(failed)
    out = failed.fn(key, None, 7, "fixed", ["random", 0])
    assert out[f_mode] == "random" and out[f_before] is None


def test_a_seed_mode_chosen_or_a_seed_typed_after_the_example_stays(engine, tmp_path, photo):
    """Typing in the seed box or choosing a mode forgets the remembered choice: nothing overrides it."""
    _, demo, _ = page_of(engine, tmp_path, photo)
    mode, before = seed_outputs(handler(demo, "ui_edit"))
    seed_box = next(b for b in handler(demo, "ui_edit").outputs if getattr(b, "elem_id", None) == "seed")
    forgets = {target for f in demo.fns.values() if f.outputs == [before] and f.fn() is None
               for target, event in f.targets if event == "input"}
    assert forgets == {mode._id, seed_box._id}
