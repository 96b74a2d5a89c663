"""The megakernel on the GPU against the float32 reference. Marked `gpu`: skipped where no sm_90 GPU is."""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mlaprof import format as fmt  # noqa: E402
from mlaprof.reference import mla_decode_reference, relative_error  # noqa: E402
from mlaprof.workloads import Workload, build_tensors  # noqa: E402
from tests.kernel_handmade import deadlock, handmade  # noqa: E402

needs_gpu = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9, reason="needs an sm_90 GPU"
)
pytestmark = [pytest.mark.gpu, needs_gpu]

TOL = 3e-3


def _run(w: Workload, instructions, slots, sems, timing=True, seed=0, shuffle=True):
    from mlaprof.kernel import Megakernel

    t = build_tensors(w, device="cuda", seed=seed, shuffle_pages=shuffle)
    mk = Megakernel(torch.from_numpy(instructions), t, slots, sems, timing=timing)
    mk.out.fill_(float("nan"))  # poison: every element must be written
    mk.out_lse.fill_(float("nan"))
    mk.run()
    return mk, t


def _check(mk, t):
    ref_o, ref_lse = mla_decode_reference(t)
    assert torch.isfinite(mk.out.float()).all(), "some output elements were never written"
    err = relative_error(mk.out.float(), ref_o)
    lse_err = relative_error(mk.out_lse, ref_lse)
    assert err < TOL, f"relative error {err:.2e}"
    assert lse_err < TOL, f"LSE relative error {lse_err:.2e}"
    return err


CASES = [
    # (lens, s_q, splits)
    ((1,), 1, [1]),
    ((63, 64, 65), 2, [1, 1, 1]),
    ((63, 64, 65), 4, [2, 3, 2]),
    ((1000, 4097), 3, [4, 6]),
    ((4641, 45118, 1730, 1696), 4, [3, 6, 2, 1]),
    ((131072,), 1, [6]),
]


@pytest.mark.parametrize("lens,s_q,splits", CASES)
@pytest.mark.parametrize("shuffle", [True, False])
def test_matches_reference(lens, s_q, splits, shuffle):
    w = Workload("t", lens, s_q)
    ins, slots, sems = handmade(w, 8, splits)
    mk, t = _run(w, ins, slots, sems, shuffle=shuffle, seed=len(lens) * 7 + s_q)
    _check(mk, t)


@pytest.mark.parametrize("s_q", [2, 4])
def test_per_token_reductions_share_a_semaphore(s_q):
    w = Workload("t", (5000, 129), s_q)
    ins, slots, sems = handmade(w, 12, [5, 2], per_token=True)
    mk, t = _run(w, ins, slots, sems, seed=11)
    _check(mk, t)
    for _ in range(3):  # every reader takes its count back: the next launch starts from zero
        mk.run()
        _check(mk, t)
    assert int(mk.sems.abs().sum()) == 0


def test_timing_on_and_off_give_identical_output():
    w = Workload("t", (3000, 777, 65), 4)
    ins, slots, sems = handmade(w, 6, [3, 2, 1])
    on, _ = _run(w, ins, slots, sems, timing=True, seed=3)
    off, _ = _run(w, ins, slots, sems, timing=False, seed=3)
    assert torch.equal(on.out, off.out) and torch.equal(on.out_lse, off.out_lse)


def test_repeated_launches_need_no_semaphore_reset():
    w = Workload("t", (5000, 300), 2)
    ins, slots, sems = handmade(w, 10, [5, 2])
    mk, t = _run(w, ins, slots, sems, seed=5)
    first = mk.out.clone()
    for _ in range(5):
        mk.out.fill_(float("nan"))
        mk.run()
        assert torch.equal(mk.out, first)
    assert int(mk.sems.abs().sum()) == 0, "semaphores are left set after a launch"


def test_event_buffer_is_consistent():
    w = Workload("t", (4000, 1000), 4)
    ins, slots, sems = handmade(w, 4, [3, 1])
    mk, _ = _run(w, ins, slots, sems)
    events, counts = mk.timing_buffers()
    assert (counts > 0).all() and (counts <= mk.event_capacity).all()
    for sm in range(ins.shape[0]):
        ev = events[sm, : counts[sm]]
        assert (ev[:, 2] > 0).all() and (ev[:, 3] >= ev[:, 2]).all()
        kinds = set((ev[:, 0] & 0xFF).tolist())
        assert {fmt.Kind.INSTRUCTION, fmt.Kind.SETUP, fmt.Kind.COMPUTE, fmt.Kind.STORE} <= kinds


@pytest.mark.parametrize("capacity", [5, 32, 45, 100])
def test_events_past_capacity_are_counted_and_the_first_ones_kept(capacity):
    """Events leave the SM in batches (a shared-memory ring flushed by bulk copies): the first ``capacity``
    must be exactly those of a run with room for all, and the count must still say how many there were."""
    from mlaprof.kernel import Megakernel

    w = Workload("t", (20000,), 4)  # ~80 tiles per split: ~160 events per SM, several ring flushes
    ins, slots, sems = handmade(w, 4, [3])
    t = build_tensors(w, device="cuda", seed=0)
    roomy = Megakernel(torch.from_numpy(ins), t, slots, sems, timing=True)
    tight = Megakernel(torch.from_numpy(ins), t, slots, sems, timing=True, event_capacity=capacity)
    roomy.run()
    tight.run()
    full, full_counts = roomy.timing_buffers()
    kept, counts = tight.timing_buffers()
    assert (counts == full_counts).all() and (counts > capacity).any()
    for sm in range(ins.shape[0]):
        n = min(int(counts[sm]), capacity)
        ev = kept[sm, :n]
        assert (ev[:, 2] > 0).all() and (ev[:, 3] >= ev[:, 2]).all(), f"SM {sm}: an event was never written"
        assert (ev[:, :2] == full[sm, :n, :2]).all(), f"SM {sm}: kept events differ from a roomy run's"
    assert torch.equal(tight.out, roomy.out)


@pytest.mark.parametrize("lens,s_q,col_block,min_depth,sms", [
    ((45118, 4641, 1730), 4, 16, 2, 132),
    ((65536,), 1, 32, 2, 132),
    ((20000, 3000), 2, 64, 1, 40),
    ((9000, 65, 700), 3, 128, 1, 24),
])
def test_counted_reductions_match_reference(lens, s_q, col_block, min_depth, sms):
    """Reduction trees flattened into column-block merges over counted inputs (one counter semaphore per
    sequence): every output element written, the counters back at zero after each launch."""
    from mlaprof.kernel import Megakernel
    from mlaprof.schedule import make_schedule
    from mlaprof.schedule.encode import encode
    from mlaprof.schedule.widen import widen_merges

    import dataclasses

    from mlaprof.costmodel import default

    sms = min(sms, torch.cuda.get_device_properties(0).multi_processor_count)
    w = Workload("t", lens, s_q)
    free = dataclasses.replace(default(), counted_base_ns=0.0, counted_round_ns=0.0, counted_line_ns=0.0)
    # merges the model calls free: flattened wherever allowed, whatever the packaged model would choose
    wide = widen_merges(make_schedule(w, sms, "static", merges="tree"), free, col_block=col_block,
                        min_depth=min_depth)
    assert any(t.counted for t in wide.tasks)
    enc = encode(wide)
    t = build_tensors(w, device="cuda", seed=4, shuffle_pages=True)
    mk = Megakernel(torch.from_numpy(enc.instructions), t, enc.num_slots, enc.num_sems, timing=True)
    for _ in range(3):
        mk.out.fill_(float("nan"))
        mk.out_lse.fill_(float("nan"))
        mk.run()
        _check(mk, t)
        assert int(mk.sems.abs().sum()) == 0, "a counter semaphore was left set"


def test_deadlock_returns_with_clear_error_and_next_launch_works():
    from mlaprof.kernel import KernelError

    w = Workload("t", (2048,), 2)
    ins, slots, sems = deadlock(w)
    t0 = time.perf_counter()
    with pytest.raises(KernelError, match="deadlocks"):
        _run(w, ins, slots, sems)
    assert time.perf_counter() - t0 < 10
    good, slots, sems = handmade(w, 2, [2])
    mk, t = _run(w, good, slots, sems)
    _check(mk, t)


@pytest.mark.parametrize("kv_end", [10_000, 900])
def test_bad_operand_is_reported(kv_end):
    """Past the block table's row (checked before any load) and inside it but past the sequence's length
    (the producer has issued Q's copy by the time it sees that)."""
    from mlaprof.kernel import KernelError

    w = Workload("t", (128, 1000), 1)
    ins, slots, sems = handmade(w, 1, [1, 1])
    first = [i for i in range(ins.shape[1]) if ins[0, i, fmt.Word.SEQ] == 0 and ins[0, i, fmt.Word.OPCODE] == fmt.Opcode.PARTIAL][0]
    ins[0, first, fmt.Word.KV_END] = kv_end  # beyond sequence 0's 128 tokens
    with pytest.raises(KernelError, match="operand out of range"):
        _run(w, ins, slots, sems)


@pytest.mark.parametrize("name", ["seed-representative", "b1-65536-q1", "b64-rand256to1024-q4"])
def test_no_shared_memory_is_read_before_it_is_written(name):
    """The kernel does not clear shared memory. A build that fills it with NaN bytes first must compute the
    same outputs bit for bit (planned ranges: steal groups may split tiles differently per launch)."""
    from mlaprof.kernel import Build, Megakernel
    from mlaprof.schedule import make_schedule
    from mlaprof.schedule.encode import encode
    from mlaprof.workloads import NAMED

    w = NAMED[name]
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    enc = encode(make_schedule(w, sms, "static", steal=False))
    t = build_tensors(w, device="cuda", seed=9, shuffle_pages=True)
    outs = []
    for build in (Build(), Build(defines=("MLAPROF_POISON_SMEM",))):
        mk = Megakernel(torch.from_numpy(enc.instructions), t, enc.num_slots, enc.num_sems, timing=True, build=build)
        mk.out.fill_(float("nan"))
        mk.out_lse.fill_(float("nan"))
        mk.run()
        _check(mk, t)
        outs.append((mk.out.clone(), mk.out_lse.clone()))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


@pytest.mark.parametrize("s_q", [1, 4])
def test_cache_rows_past_the_sequence_may_hold_nan(s_q):
    """The kernel never zeroes shared memory: rows of a sequence's last page past its length (and pages no
    sequence uses) may hold anything, NaN included, and must not reach the output."""
    from mlaprof.kernel import Megakernel

    w = Workload("t", (4, 65, 4641, 190), s_q)
    ins, slots, sems = handmade(w, 8, [1, 2, 3, 1])
    t = build_tensors(w, device="cuda", seed=21, shuffle_pages=True)
    for seq, n in enumerate(w.lens):
        last = int(t.block_table[seq, (n - 1) // w.page_size])
        t.kv_cache[last, (n - 1) % w.page_size + 1:] = float("nan")
    mk = Megakernel(torch.from_numpy(ins), t, slots, sems, timing=False)
    mk.out.fill_(float("nan"))
    mk.out_lse.fill_(float("nan"))
    mk.scratch_o.fill_(float("nan"))
    mk.run()
    _check(mk, t)


def test_a_failed_launch_is_reported_once_and_the_same_kernel_runs_again():
    """Launches do not reset the status (no extra kernel per launch): a launch after a failure ends at once on
    the abort flag, ``check`` reports the first error and clears it, and the next launch is good."""
    from mlaprof.kernel import KernelError, Megakernel

    w = Workload("t", (128,), 1)
    ins, slots, sems = handmade(w, 1, [1])
    ins[0, 0, fmt.Word.KV_END] = 10_000
    t = build_tensors(w, device="cuda", seed=2)
    mk = Megakernel(torch.from_numpy(ins), t, slots, sems, timing=False)
    mk.launch()
    mk.launch()  # before any check: sees the abort flag
    torch.cuda.synchronize()
    with pytest.raises(KernelError, match="operand out of range"):
        mk.check()
    mk.check()  # cleared: nothing to report
    mk.instructions[0, 0, fmt.Word.KV_END] = 128
    mk.out.fill_(float("nan"))
    mk.run()
    _check(mk, t)


def test_many_launches_of_back_to_back_reductions_never_fail():
    """b64-rand256to1024-q4's static schedule runs 3-5 reductions in a row on some SMs. Before the fix in
    reduction.cuh, 1 launch in ~5,000 ended in a pipeline timeout and then hung (a warp missed a phase of a
    data-less ring stage): 40,000 graph-replayed launches."""
    from mlaprof.bench import _capture
    from mlaprof.kernel import Megakernel, wait_for_gpu
    from mlaprof.schedule import make_schedule
    from mlaprof.schedule.encode import encode
    from mlaprof.workloads import NAMED

    w = NAMED["b64-rand256to1024-q4"]
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    enc = encode(make_schedule(w, sms, "static"))
    t = build_tensors(w, device="cuda", seed=4)
    mk = Megakernel(torch.from_numpy(np.ascontiguousarray(enc.instructions)), t, enc.num_slots, enc.num_sems,
                    timing=False)
    mk.run()
    first = mk.out.clone()

    def twenty():
        for _ in range(20):
            mk.launch()

    graph = _capture(twenty)
    for _ in range(40):
        for _ in range(50):
            graph.replay()
        done = torch.cuda.Event()
        done.record()
        wait_for_gpu(done, "1,000 launches", timeout_s=30)
        mk.check()
    # steal groups (on by default) hand tiles to whichever SM claims first, so the summation order and the
    # last bits may change between launches; every launch must still be right and leave the counters at 0
    assert relative_error(mk.out.float(), first.float()) < TOL and int(mk.sems.abs().sum()) == 0
    _check(mk, t)


def _steal_queues(w: Workload, num_sms: int, members: int, behind: int):
    """Sequence 0 split into ``members`` partials of one steal group (SMs 0..members-1), merged by one
    reduction on the last SM; sequence 1 whole, queued first on SM 0 when ``behind`` (so SM 0's member starts
    late and must get little more than its own tile)."""
    from tests.kernel_handmade import _row

    n_tiles = -(-w.lens[0] // fmt.KV_TILE_TOKENS)
    queues = [[] for _ in range(num_sms)]
    if behind:
        queues[0].append(_row(opcode=fmt.Opcode.PARTIAL, task=99, seq=1, q_start=0, q_count=w.s_q, kv_start=0,
                              kv_end=w.lens[1], out_slot=fmt.NO_SLOT, signal_sem=fmt.NO_SEM))
    for m in range(members):
        queues[m].append(_row(opcode=fmt.Opcode.PARTIAL, task=m, seq=0, q_start=0, q_count=w.s_q, kv_start=0,
                              kv_end=w.lens[0], out_slot=m, signal_sem=0, signal_count=fmt.SIGNAL_ADD,
                              steal_sem=1, steal_member=m, steal_members=members))
    queues[-1].append(_row(opcode=fmt.Opcode.REDUCTION, task=50, seq=0, q_start=0, q_count=1, kv_start=0,
                           kv_end=w.lens[0], out_slot=fmt.NO_SLOT, signal_sem=fmt.NO_SEM, num_inputs=members,
                           input_slots=0, input_sems=0, col_start=0, col_count=16, input_layout=fmt.InputLayout.COUNTED,
                           counter_readers=1))
    assert members <= n_tiles
    depth = max(len(q) for q in queues) + 1
    out = np.zeros((num_sms, depth, fmt.WORDS_PER_INSTRUCTION), np.int32)
    for sm, q in enumerate(queues):
        for p, row in enumerate(q):
            out[sm, p] = row
    return out


@pytest.mark.parametrize("members,behind", [(2, False), (7, False), (7, True), (31, True)])
def test_steal_group_computes_every_tile_once_and_resets_its_counter(members, behind):
    """A hand-made steal group (one query token, so one 16-column counted merge covers columns 0..15 only:
    the check is on those columns): right on every launch, the tile counter back at 0 after each, and the
    trace shows every tile of the range computed exactly once, member m's first tile being tile m."""
    from mlaprof.timing import decode_events

    w = Workload("steal", (members * 64 * 3 + 17, 900), 1)
    ins = _steal_queues(w, max(members, 2) + 1, members, behind)
    mk, t = _run(w, ins, members, 2, seed=members)
    ref_o, _ = mla_decode_reference(t)
    n_tiles = -(-w.lens[0] // fmt.KV_TILE_TOKENS)
    for launch in range(20):
        if launch:
            mk.out.fill_(float("nan"))
            mk.run()
        assert int(mk.sems.abs().sum()) == 0, "a steal counter or the merge counter was left set"
        assert relative_error(mk.out[0, :, :, :16].float(), ref_o[0, :, :, :16]) < TOL
        table, _ = decode_events(*mk.timing_buffers(), ins)
        kind = np.asarray(table.column("kind").to_pylist())
        task, aux, start = (table.column(c).to_numpy() for c in ("task", "aux", "start_ns"))
        comp = (kind == "compute") & (task < members)
        assert sorted(aux[comp].tolist()) == list(range(n_tiles))
        for m in range(members):
            mine = comp & (task == m)
            assert aux[mine][np.argmin(start[mine])] == m
    if behind:  # SM 0's member started after a whole sequence: the others took the range meanwhile
        assert int((comp & (task == 0)).sum()) < n_tiles // members


def test_named_workloads_with_steal_groups_stay_right_over_many_launches():
    from mlaprof.kernel import Megakernel
    from mlaprof.schedule import make_schedule
    from mlaprof.schedule.encode import encode
    from mlaprof.workloads import NAMED

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for name in ("seed-representative", "b1-65536-q1", "b64-rand256to1024-q4"):
        w = NAMED[name]
        s = make_schedule(w, sms, "makespan")
        assert s.params["steal"] >= 1
        enc = encode(s)
        t = build_tensors(w, device="cuda", seed=7)
        mk = Megakernel(torch.from_numpy(np.ascontiguousarray(enc.instructions)), t, enc.num_slots, enc.num_sems,
                        timing=False)
        for _ in range(50):
            mk.out.fill_(float("nan"))
            mk.run()
            assert int(mk.sems.abs().sum()) == 0
        _check(mk, t)
