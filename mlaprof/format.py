"""The one definition of the instruction format and the timing-event format.

CUDA reads these through the generated header ``csrc/format.h`` (``python -m mlaprof.format`` rewrites it;
``tests/test_format.py`` fails when the checked-in header is stale).  Nothing else in the project may
hard-code an opcode, a word offset or an event kind.
"""

from __future__ import annotations

import enum
from pathlib import Path


class Opcode(enum.IntEnum):
    END = 0  # ends an SM's instruction list
    PARTIAL = 1  # attention of some query rows over a KV range of one sequence
    REDUCTION = 2  # merge of partial results (log-sum-exp weighted): listed (<= MAX_FANIN) or counted inputs


class Kind(enum.IntEnum):
    """What a timing span measures."""

    INSTRUCTION = 0  # whole instruction, fetch to done
    SETUP = 1  # fetch/decode, scratch and pointer set-up
    LOAD = 2  # producer: one KV tile (or reduction input) issue -> arrival in shared memory
    COMPUTE = 3  # consumer: one compute step (a KV tile, or one merge)
    WAIT = 4  # semaphore wait on another SM's result
    STORE = 5  # write of the result plus the release of its semaphore


class Role(enum.IntEnum):
    CONTROLLER = 0  # the thread that walks the instruction list
    PRODUCER = 1  # the warp that issues loads
    CONSUMER = 2  # the warps that compute


# ---- model shape (DeepSeek-V3/R1 MLA under 8-way tensor parallelism) ----------------------------
HEAD_DIM_QK = 576  # 512 latent + 64 rope
HEAD_DIM_V = 512  # V is the first 512 columns of the latent KV row
NUM_HEADS_Q = 16
PAGE_SIZE = 64  # tokens per KV-cache page
MAX_S_Q = 4  # query tokens per sequence per decode step
MAX_ROWS = NUM_HEADS_Q * MAX_S_Q  # query rows one partial can hold (row = q_token * NUM_HEADS_Q + head)
KV_TILE_TOKENS = 64  # KV tokens per pipeline stage (one page): 64 x 576 bf16 = 73.7 KB, so 2 stages + Q fit in 227 KB
KV_STAGES = 2  # shared-memory stages of the KV ring: 2 x 73.7 KB tiles + 73.7 KB of Q fit in 227 KB

# ---- instruction words (int32) --------------------------------------------------------------------
MAX_FANIN = 6  # inputs of one reduction whose inputs are listed one by one
MAX_COUNTED_INPUTS = 1024  # inputs of one reduction whose inputs are counted (contiguous slots, one semaphore)
WORDS_PER_INSTRUCTION = 32


class InputLayout(enum.IntEnum):
    """How a reduction names its inputs."""

    LISTED = 0  # NUM_INPUTS slots and semaphores, one per word (tree merges)
    COUNTED = 1  # NUM_INPUTS contiguous slots from INPUT_SLOTS[0]; INPUT_SEMS[0] is one semaphore that each
    # input adds 1 to (SIGNAL_COUNT = SIGNAL_ADD); the reduction waits until it holds NUM_INPUTS


class Word(enum.IntEnum):
    OPCODE = 0
    TASK = 1  # task id in the Schedule (ties trace spans back to the schedule)
    SEQ = 2
    Q_START = 3  # first query token (0 .. s_q-1) covered
    Q_COUNT = 4  # number of query tokens covered
    KV_START = 5  # KV token range [KV_START, KV_END) of the sequence
    KV_END = 6
    OUT_SLOT = 7  # scratch slot the result goes to; -1: the final output tensor
    SIGNAL_SEM = 8  # semaphore released after the store; -1: none
    NUM_INPUTS = 9  # reduction fan-in (0 for partial)
    INPUT_SLOTS = 10  # MAX_FANIN words: scratch slots read by a reduction
    INPUT_SEMS = INPUT_SLOTS + MAX_FANIN  # MAX_FANIN words: the semaphore each input waits on
    SIGNAL_COUNT = INPUT_SEMS + MAX_FANIN  # readers of SIGNAL_SEM (0 means 1), each takes one count back; or SIGNAL_ADD
    COL_START = SIGNAL_COUNT + 1  # reduction: first V column it merges (a column block of the output)
    COL_COUNT = COL_START + 1  # reduction: V columns it merges (HEAD_DIM_V: all)
    INPUT_LAYOUT = COL_COUNT + 1  # reduction: an InputLayout
    COUNTER_READERS = INPUT_LAYOUT + 1  # counted reduction: reductions reading the same semaphore (the last resets it)
    # A partial may share its KV tiles with others (a "steal group"): KV_START/KV_END are then the group's whole
    # range, member m computes tile m first, then claims tiles from STEAL_MEMBERS on by adding 1 to STEAL_SEM,
    # until the claims run past the range; so the group's partials end together however fast each SM streams.
    STEAL_SEM = COUNTER_READERS + 1  # partial: the group's tile counter (the last claim resets it to 0)
    STEAL_MEMBER = STEAL_SEM + 1  # partial: this member's index m (its first tile is the group's tile m)
    STEAL_MEMBERS = STEAL_MEMBER + 1  # partial: members of the group; 0: no group, the partial computes its range
    RESERVED = STEAL_MEMBERS + 1  # two words kept zero: rows stay a multiple of 16 bytes


assert Word.RESERVED + 2 == WORDS_PER_INSTRUCTION

# Column blocks a counted reduction may merge: 16 rows x (cols / 8) 16-byte vectors, split over 256 consumer
# threads (the threads of one vector share its inputs, so the block must be a power of two up to 128).
COUNTED_COL_BLOCKS = (16, 32, 64, 128)
SIGNAL_ADD = -1  # SIGNAL_COUNT of a task read by counted reductions: add 1 to the semaphore instead of storing
# Scratch partial outputs (fp16) are laid out [slot][HEAD_DIM_V / SCRATCH_BLOCK_COLS][MAX_ROWS][SCRATCH_BLOCK_COLS]:
# one column block of one query token (16 rows x 32 B) is 512 contiguous bytes, so a merge of a column block
# reads whole 128-byte lines (row-major, each input row's block was a 32-byte piece of its own line).
SCRATCH_BLOCK_COLS = 16
COUNTED_BATCH = 16  # inputs a thread of a counted merge loads per L2 round trip (its registers hold no more)
CONSUMER_WARPS = 8  # the kernel's consumer warps (csrc/context.cuh): a counted merge of C columns splits its inputs 8 / (C / 16) ways
NO_SLOT = -1
NO_SEM = -1

# ---- timing events --------------------------------------------------------------------------------
# One event = EVENT_WORDS int64: [header, aux, start_ns, end_ns] with absolute %globaltimer times.
# header = instruction_index << HEADER_INSTR_SHIFT | role << HEADER_ROLE_SHIFT | kind
# aux: KV tile index for LOAD/COMPUTE, input index for WAIT, -1 otherwise.
EVENT_WORDS = 4
HEADER_KIND_BITS = 8
HEADER_ROLE_SHIFT = 8
HEADER_INSTR_SHIFT = 16
DEFAULT_EVENT_CAPACITY = 2048  # events per SM; overflow is counted, never silent

# ---- kernel status codes --------------------------------------------------------------------------
class Status(enum.IntEnum):
    OK = 0
    WAIT_TIMEOUT = 1  # a semaphore wait exceeded its bound: the schedule deadlocks or an input never came
    BAD_OPCODE = 2
    BAD_OPERAND = 3
    PIPELINE_TIMEOUT = 4  # a shared-memory pipeline barrier never completed: a kernel bug, reported not hung


WAIT_TIMEOUT_NS = 200_000_000  # 0.2 s: far above any real wait (µs), short enough that a bad schedule returns fast


def _enum_lines(prefix: str, enum_cls) -> list[str]:
    return [f"constexpr int {prefix}{m.name} = {int(m.value)};" for m in enum_cls]


def render_header() -> str:
    lines = [
        "// GENERATED by `python -m mlaprof.format` from mlaprof/format.py. Do not edit by hand.",
        "#pragma once",
        "#include <cstdint>",
        "namespace mlaprof::fmt {",
        *_enum_lines("OP_", Opcode),
        *_enum_lines("KIND_", Kind),
        *_enum_lines("ROLE_", Role),
        *_enum_lines("W_", Word),
        *_enum_lines("LAYOUT_", InputLayout),
        *_enum_lines("STATUS_", Status),
    ]
    for name in (
        "HEAD_DIM_QK", "HEAD_DIM_V", "NUM_HEADS_Q", "PAGE_SIZE", "MAX_S_Q", "MAX_ROWS", "KV_TILE_TOKENS", "KV_STAGES",
        "MAX_FANIN", "MAX_COUNTED_INPUTS", "SIGNAL_ADD", "SCRATCH_BLOCK_COLS", "COUNTED_BATCH",
        "CONSUMER_WARPS",
        "WORDS_PER_INSTRUCTION", "NO_SLOT", "NO_SEM", "EVENT_WORDS", "HEADER_KIND_BITS",
        "HEADER_ROLE_SHIFT", "HEADER_INSTR_SHIFT", "DEFAULT_EVENT_CAPACITY",
    ):
        lines.append(f"constexpr int {name} = {globals()[name]};")
    lines.append(f"constexpr long long WAIT_TIMEOUT_NS = {WAIT_TIMEOUT_NS}LL;")
    lines.append("}  // namespace mlaprof::fmt")
    return "\n".join(lines) + "\n"


HEADER_PATH = Path(__file__).resolve().parent.parent / "csrc" / "format.h"


def main() -> None:
    HEADER_PATH.write_text(render_header())
    print(f"wrote {HEADER_PATH}")


if __name__ == "__main__":
    main()
