"""The git revision recorded in trace metadata (mlaprof/provenance.py)."""

from __future__ import annotations

import re

from mlaprof import provenance


def test_environment_names_the_revision_where_git_history_is_stale(monkeypatch):
    monkeypatch.setenv("MLAPROF_GIT_REV", "e7a9952abcde")
    provenance.git_revision.cache_clear()
    try:
        assert provenance.git_revision() == "e7a9952abcde"
    finally:
        provenance.git_revision.cache_clear()


def test_checkout_revision_is_a_commit_and_says_when_the_tree_differs(monkeypatch):
    monkeypatch.delenv("MLAPROF_GIT_REV", raising=False)
    provenance.git_revision.cache_clear()
    try:
        rev = provenance.git_revision()
    finally:
        provenance.git_revision.cache_clear()
    assert rev == "" or re.fullmatch(r"[0-9a-f]{12}(\+dirty)?", rev)


def test_simulated_traces_carry_it(monkeypatch):
    from mlaprof.schedule import make_schedule
    from mlaprof.schedule.encode import encode
    from mlaprof.sim import simulate
    from mlaprof.workloads import NAMED

    monkeypatch.setenv("MLAPROF_GIT_REV", "0123456789ab")
    provenance.git_revision.cache_clear()
    try:
        trace = simulate(encode(make_schedule(NAMED["b64-512-q2"], 16, "static")))
    finally:
        provenance.git_revision.cache_clear()
    assert trace.meta.git_rev == "0123456789ab"
