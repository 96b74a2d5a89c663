"""Schedule -> the int32 instruction tensor [num_sms, max_instructions, WORDS_PER_INSTRUCTION] the kernel runs.

Row p of SM s is the p-th task of that SM's queue; an all-zero row (OPCODE=END) follows each SM's last one.
Scratch results live in slots of fp32 ``o[num_slots, MAX_ROWS, 512]`` + ``lse[num_slots, MAX_ROWS]`` (row =
q_token * 16 + head, absolute query token: a per-token reduction reads and writes only its own 16 rows).
Each scratch-writing task releases its own semaphore after its store with a count of its readers
(``Word.SIGNAL_COUNT``: a partial read by s_q per-token reductions releases s_q), and a reduction waits on
its inputs' semaphores, taking one count back each.

Counted reductions (``Task.counted``: a column block of one query token over any number of inputs) read
their inputs from contiguous slots and wait on one counter semaphore that each input adds 1 to
(``SIGNAL_COUNT = SIGNAL_ADD``); every reader of such an input must be a counted reduction over the same
inputs (one "group", one counter; ``COUNTER_READERS`` says how many read it).

Slot reuse rule: a later writer W may take a slot only if W transitively depends on every reader (all of
them, when per-token reductions share an input) of the slot's previous occupant, so no timing on the GPU can make the two lifetimes overlap; a reduction therefore
never writes a slot it reads.  Partials depend on nothing, so each scratch partial has a slot of its own;
reductions recycle the slots their subtrees are done with.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
from pathlib import Path

import numpy as np

from mlaprof import format as fmt
from mlaprof.errors import UserError
from mlaprof.schedule.steal import tiles_spanned
from mlaprof.schedule.tasks import Schedule, Task
from mlaprof.workloads import Workload

W = fmt.Word


class EncodeError(UserError):
    pass


@dataclasses.dataclass
class Encoded:
    instructions: np.ndarray  # int32 [num_sms, max_instructions, WORDS_PER_INSTRUCTION]
    num_slots: int
    num_sems: int
    schedule: Schedule | None = None  # None when loaded from a bare .npy

    @property
    def num_sms(self) -> int:
        return int(self.instructions.shape[0])


def validate(schedule: Schedule) -> list[int]:
    """Check the task graph and queues; return the tasks in a topological order (earliest planned first)."""
    tasks, n = schedule.tasks, len(schedule.tasks)
    wl = schedule.workload
    if len(schedule.queues) != schedule.num_sms:
        raise EncodeError(f"schedule has {len(schedule.queues)} queues for {schedule.num_sms} SMs")
    where = {}
    for sm, q in enumerate(schedule.queues):
        for tid in q:
            if not 0 <= tid < n:
                raise EncodeError(f"SM {sm}'s queue names task {tid}, but the schedule has tasks 0..{n - 1}")
            if tid in where:
                raise EncodeError(f"task {tid} is queued twice (SM {where[tid]} and SM {sm})")
            where[tid] = sm
    readers: list[list[int]] = [[] for _ in range(n)]
    reader_kind: list = [_UNREAD] * n  # per input: its readers' counted inputs, or None for listed readers
    checked: set = set()  # (inputs, seq, q range) already checked: the merges of one group share them
    for t in tasks:
        if t.id not in where:
            raise EncodeError(f"task {t.id} is on no SM's queue")
        if not (0 <= t.seq < wl.batch and 0 <= t.q_start and t.q_count >= 1 and t.q_start + t.q_count <= wl.s_q):
            raise EncodeError(f"task {t.id}: sequence {t.seq} / query tokens [{t.q_start}, {t.q_start + t.q_count}) "
                              f"outside the workload (batch {wl.batch}, s_q {wl.s_q})")
        if not 0 <= t.kv_start < t.kv_end <= wl.lens[t.seq]:
            raise EncodeError(f"task {t.id}: KV range [{t.kv_start}, {t.kv_end}) is empty or outside sequence "
                              f"{t.seq} (length {wl.lens[t.seq]})")
        if t.op == fmt.Opcode.PARTIAL:
            if t.inputs:
                raise EncodeError(f"task {t.id}: a partial has no inputs, got {list(t.inputs)}")
            continue
        if t.op != fmt.Opcode.REDUCTION:
            raise EncodeError(f"task {t.id}: unknown opcode {t.op!r}")
        counted = t.counted
        if counted:
            _check_counted(t)
        elif not 1 <= len(t.inputs) <= fmt.MAX_FANIN:
            raise EncodeError(f"task {t.id}: reduction fan-in {len(t.inputs)} outside 1..{fmt.MAX_FANIN}")
        kind = t.inputs if counted else None
        for i in t.inputs:
            if 0 <= i < n:
                readers[i].append(t.id)
                if reader_kind[i] is _UNREAD:
                    reader_kind[i] = kind
                elif reader_kind[i] != kind:
                    raise EncodeError(f"task {i} is read by reductions {readers[i]} that do not all count the "
                                      "same inputs: a result read by a counted reduction signals one counter, so "
                                      "every reader must be a counted reduction over the same inputs")
        key = (t.inputs, t.seq, t.q_start, t.q_count)
        if key in checked:
            continue
        checked.add(key)
        if len(set(t.inputs)) != len(t.inputs):
            raise EncodeError(f"task {t.id}: an input is listed twice in {list(t.inputs)}")
        for i in t.inputs:
            if not 0 <= i < n:
                raise EncodeError(f"task {t.id}: input {i} is not a task of this schedule")
            src = tasks[i]
            if src.final:
                raise EncodeError(f"task {t.id}: input {i} writes the final output, not a scratch slot")
            if src.seq != t.seq or not src.q_start <= t.q_start <= t.q_start + t.q_count <= src.q_start + src.q_count:
                raise EncodeError(
                    f"task {t.id}: input {i} covers sequence {src.seq} tokens [{src.q_start}, "
                    f"{src.q_start + src.q_count}), the reduction sequence {t.seq} tokens "
                    f"[{t.q_start}, {t.q_start + t.q_count}): an input must cover the reduction's q range"
                )
    for t in tasks:
        if not t.final and not readers[t.id]:
            raise EncodeError(f"task {t.id} writes scratch that no reduction reads (mark it final or merge it)")
    steal_groups(tasks)
    # Kahn's algorithm, earliest planned start first, so slots are handed out in roughly execution order
    indeg = [len(t.inputs) for t in tasks]
    heap = [(t.est_start_us, t.id) for t in tasks if not t.inputs]
    heapq.heapify(heap)
    order = []
    while heap:
        _, tid = heapq.heappop(heap)
        order.append(tid)
        for r in readers[tid]:
            indeg[r] -= 1
            if indeg[r] == 0:
                heapq.heappush(heap, (tasks[r].est_start_us, r))
    if len(order) != n:
        stuck = [t.id for t in tasks if indeg[t.id] > 0][:8]
        raise EncodeError(f"the task graph has a cycle (tasks {stuck} never become ready)")
    return order


_UNREAD = object()


def steal_groups(tasks: list[Task]) -> dict[int, list[int]]:
    """Steal group id -> its partials in KV order (the member index). Checks that each group is two or more
    scratch-writing partials of one sequence and query range whose ranges tile one contiguous range with at
    least as many KV tiles as members (each member's first tile is its own)."""
    groups: dict[int, list[int]] = {}
    for t in tasks:
        if t.steal >= 0:
            groups.setdefault(t.steal, []).append(t.id)
        elif t.steal != -1:
            raise EncodeError(f"task {t.id}: steal group {t.steal} (a group id is >= 0; -1: none)")
    for g, ids in groups.items():
        ids.sort(key=lambda i: tasks[i].kv_start)
        first, where = tasks[ids[0]], f"steal group {g} (tasks {ids[:8]}{'...' if len(ids) > 8 else ''})"
        if len(ids) < 2:
            raise EncodeError(f"{where}: a steal group needs two or more partials, got one")
        for i in ids:
            t = tasks[i]
            if t.op != fmt.Opcode.PARTIAL or t.final:
                raise EncodeError(f"{where}: task {i} is {'a final partial' if t.final else 'a reduction'}; "
                                  "only partials whose results a reduction merges can share tiles")
            if (t.seq, t.q_start, t.q_count) != (first.seq, first.q_start, first.q_count):
                raise EncodeError(f"{where}: task {i} covers sequence {t.seq} tokens [{t.q_start}, "
                                  f"{t.q_start + t.q_count}), task {first.id} sequence {first.seq} tokens "
                                  f"[{first.q_start}, {first.q_start + first.q_count}): a group shares one query range")
        for a, b in zip(ids, ids[1:]):
            if tasks[a].kv_end != tasks[b].kv_start:
                raise EncodeError(f"{where}: ranges of tasks {a} [{tasks[a].kv_start}, {tasks[a].kv_end}) and {b} "
                                  f"[{tasks[b].kv_start}, {tasks[b].kv_end}) are not contiguous: a group's ranges "
                                  "must tile one range")
        lo, hi = tasks[ids[0]].kv_start, tasks[ids[-1]].kv_end
        n_tiles = tiles_spanned(lo, hi)
        if n_tiles < len(ids):
            raise EncodeError(f"{where}: {len(ids)} partials share [{lo}, {hi}), only {n_tiles} KV tiles of "
                              f"{fmt.KV_TILE_TOKENS} tokens: each member needs a tile of its own")
    return groups


def _check_counted(t: Task) -> None:
    where = f"task {t.id} (a reduction over a column block or more than {fmt.MAX_FANIN} inputs)"
    if not 1 <= len(t.inputs) <= fmt.MAX_COUNTED_INPUTS:
        raise EncodeError(f"{where}: {len(t.inputs)} inputs, allowed 1..{fmt.MAX_COUNTED_INPUTS}")
    if t.q_count != 1:
        raise EncodeError(f"{where}: fan-in {len(t.inputs)}, {t.q_count} query tokens: a reduction over more than "
                          f"{fmt.MAX_FANIN} inputs or a column block must cover one query token")
    if t.col_count not in fmt.COUNTED_COL_BLOCKS or t.col_start % t.col_count or not 0 <= t.col_start <= fmt.HEAD_DIM_V - t.col_count:
        raise EncodeError(f"{where}: column block [{t.col_start}, {t.col_start + t.col_count}) must be "
                          f"{'/'.join(map(str, fmt.COUNTED_COL_BLOCKS))} columns wide, aligned to its width, inside "
                          f"0..{fmt.HEAD_DIM_V}")


def counted_groups(tasks: list[Task]) -> dict[tuple[int, ...], list[int]]:
    """Input tuple -> the counted reductions reading it, in task order. The inputs of one group share one
    counter semaphore and contiguous slots."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for t in tasks:
        if t.counted:
            groups.setdefault(tuple(t.inputs), []).append(t.id)
    return groups


def allocate_slots(schedule: Schedule, order: list[int]) -> tuple[list[int], int]:
    """Scratch slot per task (-1 for final tasks) under the reuse rule, and the number of slots. The inputs of
    each counted group get fresh contiguous slots first, in input order (a counted reduction names only the
    first); a fresh slot is never a reuse, so the rule holds for them trivially."""
    tasks = schedule.tasks
    reading: dict[int, set] = {}
    for t in tasks:
        for i in t.inputs:
            reading.setdefault(i, set()).add(t.id)
    readers = {i: frozenset(r) for i, r in reading.items()}
    slot = [fmt.NO_SLOT] * len(tasks)
    occupant: list[int] = []  # slot -> task whose result it holds now
    for inputs in counted_groups(tasks):
        for i in inputs:
            slot[i] = len(occupant)
            occupant.append(i)
    anc: list[frozenset] = [frozenset()] * len(tasks)
    for tid in order:
        t = tasks[tid]
        a = set()
        for i in t.inputs:
            a |= anc[i]
            a.add(i)
        anc[tid] = frozenset(a)
        if t.final or slot[tid] != fmt.NO_SLOT:
            continue
        best = None
        for r in anc[tid]:  # slots read by reductions this writer depends on: the only ones it may reuse
            for x in tasks[r].inputs:
                s = slot[x]
                if occupant[s] == x and readers[x] <= anc[tid] and (best is None or s < best):
                    best = s
        if best is None:
            best = len(occupant)
            occupant.append(tid)
        occupant[best] = tid
        slot[tid] = best
    return slot, len(occupant)


def encode(schedule: Schedule) -> Encoded:
    order = validate(schedule)
    slot, num_slots = allocate_slots(schedule, order)
    tasks = schedule.tasks
    readers: list[list[int]] = [[] for _ in tasks]
    for t in tasks:
        for i in t.inputs:
            readers[i].append(t.id)
    groups = counted_groups(tasks)
    group_of = {i: inputs for inputs in groups for i in inputs}
    group_sem: dict[tuple[int, ...], int] = {}
    sem = [fmt.NO_SEM] * len(tasks)
    num_sems = 0
    for t in tasks:  # dense, in task-id order; the inputs of a counted group share their group's counter
        if t.final:
            continue
        g = group_of.get(t.id)
        if g is not None and g in group_sem:
            sem[t.id] = group_sem[g]
            continue
        sem[t.id] = num_sems
        if g is not None:
            group_sem[g] = num_sems
        num_sems += 1
    member: dict[int, tuple[int, int, int, int, int]] = {}  # task -> (sem, index, members, union start, end)
    for ids in steal_groups(tasks).values():  # validated already; each group's tile counter is a fresh semaphore
        lo, hi = tasks[ids[0]].kv_start, tasks[ids[-1]].kv_end
        for k, i in enumerate(ids):
            member[i] = (num_sems, k, len(ids), lo, hi)
        num_sems += 1
    max_instr = max(len(q) for q in schedule.queues) + 1
    out = np.zeros((schedule.num_sms, max_instr, fmt.WORDS_PER_INSTRUCTION), dtype=np.int32)
    for sm, q in enumerate(schedule.queues):
        for p, tid in enumerate(q):
            t = tasks[tid]
            row = out[sm, p]
            row[W.OPCODE] = int(t.op)
            row[W.TASK] = t.id
            row[W.SEQ], row[W.Q_START], row[W.Q_COUNT] = t.seq, t.q_start, t.q_count
            row[W.KV_START], row[W.KV_END] = t.kv_start, t.kv_end
            row[W.OUT_SLOT] = slot[tid]
            row[W.SIGNAL_SEM] = sem[tid]
            row[W.SIGNAL_COUNT] = fmt.SIGNAL_ADD if tid in group_of else len(readers[tid])
            row[W.NUM_INPUTS] = len(t.inputs)
            if tid in member:  # the kernel sees the group's whole range; the task's own is the planned share
                row[W.STEAL_SEM], row[W.STEAL_MEMBER], row[W.STEAL_MEMBERS], row[W.KV_START], row[W.KV_END] = member[tid]
            if t.op == fmt.Opcode.REDUCTION:  # a partial computes every column: its words stay zero
                row[W.COL_START], row[W.COL_COUNT] = t.col_start, t.col_count
            if t.counted:
                row[W.INPUT_LAYOUT] = fmt.InputLayout.COUNTED
                row[W.INPUT_SLOTS] = slot[t.inputs[0]]
                row[W.INPUT_SEMS] = sem[t.inputs[0]]
                row[W.COUNTER_READERS] = len(groups[tuple(t.inputs)])
                continue
            for k, i in enumerate(t.inputs):
                row[W.INPUT_SLOTS + k] = slot[i]
                row[W.INPUT_SEMS + k] = sem[i]
    return Encoded(out, num_slots, num_sems, schedule)


def counts_of(instructions: np.ndarray) -> tuple[int, int]:
    """(num_slots, num_sems) a bare instruction tensor needs."""
    live = instructions[..., W.OPCODE] != fmt.Opcode.END
    rows = instructions[live]
    steal_sems = rows[rows[:, W.STEAL_MEMBERS] > 0, W.STEAL_SEM]  # steal groups' tile counters
    return int(rows[:, W.OUT_SLOT].max(initial=-1)) + 1, int(max(rows[:, W.SIGNAL_SEM].max(initial=-1),
                                                                  steal_sems.max(initial=-1))) + 1


# ---- files ------------------------------------------------------------------------------------------------
def save(encoded: Encoded, path: str | Path) -> Path:
    """``.npy``: the tensor alone (what the kernel needs); ``.npz``: the tensor plus the schedule as JSON."""
    path = Path(path)
    if path.suffix == ".npy":
        np.save(path, encoded.instructions)
        return path
    if path.suffix != ".npz":
        raise EncodeError(f"{path}: instruction files end in .npy (tensor only) or .npz (tensor + schedule)")
    s = encoded.schedule
    meta = {"num_slots": encoded.num_slots, "num_sems": encoded.num_sems}
    if s is not None:
        meta.update(workload=s.workload.to_json(), num_sms=s.num_sms, scheduler=s.scheduler, params=s.params,
                    predicted_makespan_us=s.predicted_makespan_us, compute_ms=s.compute_ms,
                    queues=s.queues, tasks=s.to_json())
    np.savez(path, instructions=encoded.instructions, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    return path


def load(path: str | Path) -> Encoded:
    path = Path(path)
    if not path.is_file():
        raise EncodeError(f"{path}: no such instruction file")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise EncodeError(f"{path}: not a .npy/.npz instruction file ({str(e).splitlines()[0]})") from None
    if isinstance(data, np.ndarray):
        instr, meta = data, {}
    else:
        if "instructions" not in data.files:
            raise EncodeError(f"{path}: .npz without an 'instructions' array")
        instr = data["instructions"]
        meta = json.loads(bytes(data["meta"]).decode()) if "meta" in data.files else {}
    if instr.ndim != 3 or instr.shape[2] != fmt.WORDS_PER_INSTRUCTION or instr.dtype != np.int32:
        raise EncodeError(f"{path}: expected int32 [num_sms, max_instructions, {fmt.WORDS_PER_INSTRUCTION}], "
                          f"got {instr.dtype} {list(instr.shape)}")
    slots, sems = counts_of(instr)
    schedule = _schedule_from_meta(meta) if "tasks" in meta else None
    return Encoded(instr, int(meta.get("num_slots", slots)), int(meta.get("num_sems", sems)), schedule)


def _schedule_from_meta(meta: dict) -> Schedule:
    tasks = [
        Task(id=t["id"], op=fmt.Opcode[t["op"].upper()], seq=t["seq"], q_start=t["q_start"], q_count=t["q_count"],
             kv_start=t["kv_start"], kv_end=t["kv_end"], inputs=tuple(t["inputs"]), final=t["final"], sm=t["sm"],
             est_start_us=t["est_start_us"], est_end_us=t["est_end_us"], col_start=t.get("col_start", 0),
             col_count=t.get("col_count", fmt.HEAD_DIM_V), steal=t.get("steal", -1))
        for t in meta["tasks"]
    ]
    return Schedule(
        workload=Workload.from_json(meta["workload"]), num_sms=meta["num_sms"], tasks=tasks, queues=meta["queues"],
        scheduler=meta["scheduler"], params=meta.get("params", {}),
        predicted_makespan_us=meta.get("predicted_makespan_us", 0.0), compute_ms=meta.get("compute_ms", 0.0),
    )


def from_trace(trace) -> Schedule:
    """The schedule a trace ran: its task table (metadata ``tasks``) in the per-SM order of its INSTRUCTION
    spans, so ``encode`` rebuilds the instruction tensor and ``mlaprof.sim`` can replay a measured run."""
    from mlaprof.trace.schema import KIND_NAMES

    meta = trace.meta
    if not meta.tasks:
        raise EncodeError("the trace has no task table in its metadata: cannot rebuild its schedule")
    inst = trace.codes("kind", KIND_NAMES) == fmt.Kind.INSTRUCTION
    sm, instr, task = (trace.col(c)[inst].astype(np.int64) for c in ("sm", "instr", "task"))
    queues: list[list[int]] = [[] for _ in range(meta.sm_count)]
    for i in np.lexsort((instr, sm)):
        queues[int(sm[i])].append(int(task[i]))
    return _schedule_from_meta({"workload": meta.workload, "num_sms": meta.sm_count, "queues": queues,
                                "scheduler": meta.scheduler, "params": meta.scheduler_params, "tasks": meta.tasks})
