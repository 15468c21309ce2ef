import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kontext.core.history import History, Node


def edit(prompt="p", seed=1):
    return Node(id=0, parent=None, kind="edit", image=f"{prompt}.png", prompt=prompt, seed=seed)


def root(name="src"):
    return Node(id=0, parent=None, kind="upload", image=f"{name}.png")


def chain(n):
    h = History().add(root(), parent=None)
    for i in range(n):
        h = h.add(edit(f"e{i}"))
    return h


def test_start_and_add_turns():
    h = chain(3)
    assert [n.id for n in h.path()] == [1, 2, 3, 4]
    assert h.current == 4 and h.node(4).parent == 3
    assert h.node(2).prompt == "e0"


def test_operations_do_not_change_the_old_value():
    h = chain(2)
    h2 = h.undo()
    h3 = h.add(edit("x"))
    assert h.current == 3 and len(h) == 3
    assert h2.current == 2 and len(h3) == 4
    assert h3.version == h.version + 1


def test_undo_at_root_and_redo_at_leaf_change_nothing():
    h = History().add(root(), parent=None)
    assert not h.can_undo and h.undo() is h
    assert not h.can_redo and h.redo() is h
    empty = History()
    assert empty.undo() is empty and empty.redo() is empty and empty.path() == []


def test_undo_redo_roundtrip():
    h = chain(3)
    u = h.undo().undo()
    assert u.current == 2
    r = u.redo()
    assert r.current == 3
    assert r.redo().current == 4


def test_edit_after_undo_branches_and_keeps_old_branch():
    h = chain(3).undo().undo()  # at 2
    b = h.add(edit("branch"))
    assert b.current == 5 and b.node(5).parent == 2
    assert [n.id for n in b.children(2)] == [3, 5]
    assert 4 in b.nodes  # the old branch is still there
    assert b.jump(4).path()[-1].id == 4


def test_redo_follows_the_branch_you_came_from():
    h = chain(3).undo().undo()  # at 2, children [3]
    b = h.add(edit("branch"))  # 5 under 2
    b = b.jump(4)  # back to the old branch
    back = b.undo().undo()  # at 2, came from 3
    assert back.redo().current == 3
    b2 = b.jump(5).undo()  # at 2, came from 5
    assert b2.redo().current == 5


def test_jump_then_edit():
    h = chain(4).jump(2)
    h = h.add(edit("from 2"))
    assert h.node(h.current).parent == 2
    assert [n.id for n in h.path()] == [1, 2, h.current]


def test_jump_to_missing_step_names_it():
    with pytest.raises(ValueError, match="step 99"):
        chain(1).jump(99)


def test_tip_and_siblings():
    h = chain(3).jump(2).add(edit("b"))  # 5 under 2
    assert [n.id for n in h.siblings()] == [3, 5]
    assert h.tip(2) == 5
    assert h.jump(4).tip(2) == 4


def test_size_bound_gives_clear_error():
    h = History(max_nodes=3).add(root(), parent=None).add(edit()).add(edit())
    with pytest.raises(ValueError, match="at most 3 steps"):
        h.add(edit())


def test_edit_needs_a_parent():
    with pytest.raises(ValueError, match="needs a parent"):
        History().add(edit(), parent=None)


def test_several_roots():
    h = chain(1).add(root("other"), parent=None)
    assert [n.id for n in h.roots()] == [1, 3]
    assert [n.id for n in h.path()] == [3]


def test_json_roundtrip():
    h = chain(3).undo().add(edit("b")).undo()
    back = History.from_dict(h.to_dict())
    assert back.to_dict() == h.to_dict()
    assert back.redo().current == h.redo().current


@pytest.mark.parametrize("mutate, msg", [
    (lambda d: d["nodes"].append(dict(d["nodes"][0])), "twice"),
    (lambda d: d["nodes"][1].update(parent=42), "parent 42"),
    (lambda d: d.update(current=77), "current step 77"),
    (lambda d: d.update(format=9), "format 1"),
    (lambda d: d["nodes"][1].update(kind="magic"), "node kind"),
    (lambda d: d["nodes"][1].pop("image"), "missing"),
])
def test_from_dict_rejects_malformed(mutate, msg):
    d = chain(2).to_dict()
    mutate(d)
    with pytest.raises(ValueError, match=msg):
        History.from_dict(d)


# --- property-based: random operation sequences keep the invariants -------------------------------
ops = st.lists(st.tuples(st.sampled_from(["add", "undo", "redo", "jump", "root"]), st.integers(0, 50)),
               max_size=60)


def check_invariants(h: History, seen: set[int]):
    assert seen <= set(h.nodes)  # no node is ever lost
    if h.current is None:
        assert h.empty
        return
    path = h.path()
    assert path[0].parent is None and path[-1].id == h.current
    for a, b in zip(path, path[1:], strict=False):
        assert b.parent == a.id
    for parent, child in h.last_child.items():
        assert h.nodes[child].parent == parent


@settings(max_examples=200, deadline=None)
@given(ops)
def test_random_sequences_keep_invariants(seq):
    h = History(max_nodes=40)
    seen: set[int] = set()
    for op, n in seq:
        before = h
        if op == "root" or (op == "add" and h.empty):
            if len(h) < h.max_nodes:
                h = h.add(root(), parent=None)
        elif op == "add" and len(h) < h.max_nodes:
            h = h.add(edit(seed=n))
        elif op == "undo":
            h = h.undo()
            if before.can_undo:
                assert h.redo().current == before.current  # redo undoes undo
        elif op == "redo":
            h = h.redo()
            if before.can_redo:
                assert h.undo().current == before.current  # undo undoes redo
        elif op == "jump" and h.nodes:
            target = sorted(h.nodes)[n % len(h.nodes)]
            h = h.jump(target)
            assert h.current == target
        seen |= set(h.nodes)
        check_invariants(h, seen)
