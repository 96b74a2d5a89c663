"""The instruction/event format has one definition: csrc/format.h must be what mlaprof.format renders."""

import re

from mlaprof import format as fmt


def test_checked_in_header_is_current():
    assert fmt.HEADER_PATH.read_text() == fmt.render_header(), "run `python -m mlaprof.format` and commit csrc/format.h"


def test_header_constants_match_python():
    text = fmt.HEADER_PATH.read_text()
    consts = {m[0]: int(m[1]) for m in re.findall(r"constexpr (?:int|long long) (\w+) = (-?\d+)", text)}
    for op in fmt.Opcode:
        assert consts[f"OP_{op.name}"] == op
    for w in fmt.Word:
        assert consts[f"W_{w.name}"] == w
    for k in fmt.Kind:
        assert consts[f"KIND_{k.name}"] == k
    assert consts["WORDS_PER_INSTRUCTION"] == fmt.WORDS_PER_INSTRUCTION


def test_instruction_words_fit_and_do_not_collide():
    starts = sorted(int(w) for w in fmt.Word)
    assert len(set(starts)) == len(starts)
    assert fmt.Word.INPUT_SEMS - fmt.Word.INPUT_SLOTS == fmt.MAX_FANIN
    assert fmt.Word.RESERVED + 2 == fmt.WORDS_PER_INSTRUCTION
    assert fmt.Opcode.END == 0  # a zero-filled row ends every SM's list


def test_event_header_round_trip():
    from mlaprof.timing import encode_header

    h = encode_header(fmt.Kind.WAIT, fmt.Role.CONTROLLER, 1234)
    assert h & 0xFF == fmt.Kind.WAIT
    assert (h >> fmt.HEADER_ROLE_SHIFT) & 0xFF == fmt.Role.CONTROLLER
    assert h >> fmt.HEADER_INSTR_SHIFT == 1234
