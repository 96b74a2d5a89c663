"""Merge placement by simulated time: the makespan scheduler's last pass.

A scheduler places each reduction on an SM by its own timeline, in which a split sequence's partials end
as planned. Steal groups (``steal.py``) change that: the members end together, wherever the planned ranges
would have ended, so a merge queued behind another SM's short planned partial may now wait there behind a
merge of another sequence while SMs that run no partial sit idle (seed-representative's v22 traces: four SMs
ran a merge of sequence 2 and then one of sequence 1, on the critical path).

This pass asks the simulator (which serves steal claims in time order, as the GPU does) when each partial
ends, when each merge's inputs are ready and how long the merge works, then places the merges again,
backwards: the last to be ready first, each where it would finish soonest without moving a merge placed
before it (before the SM's first placed merge or after its last), so the merges on the critical path get
SMs of their own and the ones with slack fill in around them (on a tie: the SM with fewer merges, then the
one it was on). Each SM runs its partials first, in their order, then its merges by planned start. Merges that read only partials
cannot wait on work queued after them; schedules with reduction trees (a reduction reading another) are left
as they are. The result is simulated once more and kept only if it ends sooner.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mlaprof import format as fmt
from mlaprof.schedule.tasks import Schedule


def _simulated_times(schedule: Schedule, cost) -> tuple[dict[int, tuple[float, float]], float]:
    """Each task's simulated (start, end) in us and the simulated makespan (the INSTRUCTION spans of the
    decoded simulation, as columns)."""
    from mlaprof.schedule.encode import encode
    from mlaprof.sim import run
    from mlaprof.timing import decode_events

    enc = encode(schedule)
    table, _ = decode_events(*run(enc.instructions, cost), enc.instructions)
    if not table.num_rows:
        return {}, 0.0
    kind = table.column("kind").combine_chunks().indices.to_numpy()  # codes are format.Kind values
    mine = kind == fmt.Kind.INSTRUCTION
    task = table.column("task").to_numpy()[mine]
    start = table.column("start_ns").to_numpy()[mine] / 1e3
    end_ns = table.column("end_ns").to_numpy()
    times = {int(k): (float(a), float(b)) for k, a, b in zip(task, start, end_ns[mine] / 1e3)}
    return times, float(end_ns.max()) / 1e3


def place_merges(schedule: Schedule, cost=None) -> Schedule:
    """The schedule with its reductions placed again by simulated time (a new Schedule), or the schedule
    itself when that is not predicted to end sooner (or it has reduction trees)."""
    from mlaprof.costmodel import resolve

    tasks = schedule.tasks
    partial = fmt.Opcode.PARTIAL
    merges = [t.id for t in tasks if t.op is fmt.Opcode.REDUCTION]
    if not merges or any(tasks[j].op is not partial for i in merges for j in tasks[i].inputs):
        return schedule
    cost = resolve(cost)
    times, before = _simulated_times(schedule, cost)
    avail = [max((times[i][1] for i in q if tasks[i].op is partial), default=0.0) for q in schedule.queues]
    ready = {i: max(times[j][1] for j in tasks[i].inputs) for i in merges}
    # a merge's own work: its simulated span less any wait for its inputs (one queued early waits in it)
    work = {i: times[i][1] - max(times[i][0], ready[i]) for i in merges}
    partials_first = all(tasks[i].op is partial or all(tasks[j].op is not partial for j in q[k:])
                         for q in schedule.queues for k, i in enumerate(q))
    if partials_first and all(times[i][0] <= ready[i] + 1e-3 for i in merges):
        return schedule  # every merge already starts when its inputs are ready: no placement ends sooner
    # each SM's placed merges as one busy span: a merge goes before the first or after the last (merges
    # come in order of falling readiness, so a gap between two placed ones is rarely long enough)
    n = schedule.num_sms
    avail = np.asarray(avail)
    first = np.full(n, np.inf)
    last = avail.copy()
    count = np.zeros(n, dtype=np.int64)
    home = np.arange(n)
    start_of: dict[int, float] = {}
    sm_of: dict[int, int] = {}
    for i in sorted(merges, key=lambda i: (-ready[i], -work[i], i)):
        before_first = np.maximum(avail, ready[i])
        fits = before_first + work[i] <= first
        start = np.where(fits, before_first, np.maximum(last, ready[i]))
        finish = np.round(start + work[i], 6)
        # soonest finish; then fewer merges, then the SM it was on, then the lowest index
        order = np.lexsort((home, home != tasks[i].sm, count, finish))
        sm = int(order[0])
        s = float(start[sm])
        if fits[sm]:
            first[sm] = s
            if count[sm] == 0:
                last[sm] = s + work[i]
        else:
            last[sm] = s + work[i]
            if count[sm] == 0:
                first[sm] = s
        count[sm] += 1
        start_of[i], sm_of[i] = s, sm
    placed = [sorted((i for i in merges if sm_of[i] == sm), key=lambda i: (start_of[i], i)) for sm in range(n)]
    queues = [[i for i in q if tasks[i].op is partial] + placed[sm] for sm, q in enumerate(schedule.queues)]
    if queues == schedule.queues:
        return schedule
    candidate = dataclasses.replace(schedule, queues=queues)  # the simulator follows the queues, not Task.sm
    sim, after = _simulated_times(candidate, cost)
    if after >= before:
        return schedule
    moved = sum(1 for i in merges if tasks[i].sm != sm_of[i])
    # every task's prediction from that simulation: one time base for partials and merges alike
    new_tasks = [dataclasses.replace(t, sm=sm_of.get(t.id, t.sm), est_start_us=sim[t.id][0], est_end_us=sim[t.id][1])
                 for t in tasks]
    return dataclasses.replace(candidate, tasks=new_tasks, predicted_makespan_us=after,
                               params={**schedule.params, "placed_merges": moved,
                                       "placement": f"{before:.2f} -> {after:.2f} us simulated"})
