"""Only .arrow files inside DIR can be opened: '..', absolute paths and symlinks leaving DIR are refused."""

import os

import pytest

from dashboard.files import TraceDir, UnsafePathError
from mlaprof.errors import UserError


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "served"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.arrow").write_bytes(b"x")
    (root / "sub" / "b.arrow").write_bytes(b"x")
    (root / "sub" / "deeper" / "c.arrow").write_bytes(b"x")
    (root / "notes.txt").write_text("not a trace")
    (root / ".a.arrow.123.tmp").write_bytes(b"x")  # write_trace's temporary
    (root / ".hidden.arrow").write_bytes(b"x")
    outside = tmp_path / "secret.arrow"
    outside.write_bytes(b"x")
    os.symlink(outside, root / "leak.arrow")  # a link that leaves DIR
    os.symlink(root / "a.arrow", root / "sub" / "alias.arrow")  # a link that stays inside
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "d.arrow").write_bytes(b"x")
    os.symlink(tmp_path / "elsewhere", root / "linked_dir")  # a directory link that leaves DIR
    return root


def test_discovers_recursively_and_only_inside(tree):
    assert TraceDir(tree).discover() == ["a.arrow", "sub/alias.arrow", "sub/b.arrow", "sub/deeper/c.arrow"]


@pytest.mark.parametrize("bad, why", [
    ("../secret.arrow", "'..'"),
    ("sub/../../secret.arrow", "'..'"),
    ("sub/../a.arrow", "'..'"),
    ("/etc/passwd", "relative"),
    ("C:\\x\\a.arrow", "relative"),
    ("sub\\b.arrow", "relative"),
    ("notes.txt", ".arrow"),
    ("leak.arrow", "outside"),
    ("linked_dir/d.arrow", "outside"),
    ("missing.arrow", "no such"),
    ("", "no trace path"),
    ("a.arrow\x00", "no trace path"),
])
def test_resolve_refuses(tree, bad, why):
    with pytest.raises(UnsafePathError) as e:
        TraceDir(tree).resolve(bad)
    assert why in str(e.value)
    assert "\n" not in str(e.value)


def test_resolve_accepts_inside(tree):
    d = TraceDir(tree)
    assert d.resolve("sub/deeper/c.arrow") == (tree / "sub" / "deeper" / "c.arrow").resolve()
    assert d.resolve("sub/alias.arrow") == (tree / "a.arrow").resolve()


def test_missing_dir_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a directory"):
        TraceDir(tmp_path / "nope")
