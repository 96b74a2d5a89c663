"""Side-by-side benchmark on one GPU, in one process: the megakernel (each scheduler, timing off and on), a
two-launch split-KV baseline built from the same ops, torch SDPA on gathered KV, and any installed peer.

Every entry is checked against the float32 reference before it is timed; each is timed by CUDA-graph replay
(median of many) and by plain back-to-back launches (median).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from mlaprof import format as fmt
from mlaprof.kernel import wait_for_gpu
from mlaprof.workloads import NAMED, Workload

GRAPH_REPLAYS = 200  # median of at least 100, as the peers report
PLAIN_LAUNCHES = 200
HBM_TBPS = 3.35


@dataclasses.dataclass
class Entry:
    workload: str
    impl: str
    scheduler: str = ""
    merges: str = ""  # megakernel: "wide" (the default, schedule/widen.py) or "tree" (the scheduler's trees)
    tiles: str = ""  # megakernel: "steal" (the default: split sequences share tiles, schedule/steal.py) or "fixed"
    timing: str = "off"
    us_graph: float | None = None      # one graph replay between two events (the host's launch call partly inside)
    us_graph_gpu: float | None = None  # the same with the host's launch call covered: the GPU's time alone
    us_plain: float | None = None
    tflops: float | None = None
    gbs: float | None = None
    x_floor: float | None = None
    rel_err: float | None = None
    gpu: str = ""
    note: str = ""


def _capture(fn: Callable[[], None]):
    """A CUDA graph of one call of ``fn``, warmed up."""
    import torch

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
        warmed = torch.cuda.Event()
        warmed.record()
    wait_for_gpu(warmed, "the warm-up launches before a CUDA-graph capture")
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    for _ in range(5):
        graph.replay()
    replayed = torch.cuda.Event()
    replayed.record()
    wait_for_gpu(replayed, "the warm-up replays of a CUDA graph")
    return graph


# A GPU sleep queued before the start event of a "covered" replay: longer than the host needs to record the
# event and launch the graph (~10-20 us from Python), so the GPU waits on nothing the host does.
COVER_CYCLES = 200_000  # ~0.1 ms at the H100's 1.98 GHz


def _replay_us(graph, cover: bool = False) -> float:
    """One replay between two events. Uncovered, the start event fires at once and the time holds part of
    the host's graph-launch call too (~3 us on the device machines: bench/NOTES.md); ``cover`` queues a GPU
    sleep first, so the events bracket the GPU's work on the graph alone."""
    import torch

    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    if cover:
        torch.cuda._sleep(COVER_CYCLES)
    a.record()
    graph.replay()
    b.record()
    wait_for_gpu(b, "a CUDA-graph replay")
    return a.elapsed_time(b) * 1e3


def _replays_us(graph, n: int) -> tuple[list[float], list[float]]:
    """n replays timed each way: (uncovered, covered)."""
    return [_replay_us(graph) for _ in range(n)], [_replay_us(graph, cover=True) for _ in range(n)]


def _median_graph_us(fn: Callable[[], None], replays: int) -> tuple[float, float]:
    """Median graph-replay time of ``fn``: (uncovered, covered), in us."""
    plain, covered = _replays_us(_capture(fn), replays)
    return statistics.median(plain), statistics.median(covered)


INTERLEAVE_ROUNDS = 10


def record_probe_trace(directory, workload, scheduler: str, num_sms: int, label: str, build=None, **shape) -> float:
    """The bench/ probes' optional trace: one timing-on run of ``workload`` (``measure``, schedule shaped by
    ``shape``: merges, steal; ``build``: a ``kernel.Build``) written as
    ``directory/<workload>__<scheduler>__<label>.arrow``; returns its makespan in µs."""
    from pathlib import Path

    from mlaprof.measure import measure
    from mlaprof.trace.io import write_trace

    run = measure(workload, scheduler, num_sms=num_sms, repeat=5, build=build, **shape)
    Path(directory).mkdir(parents=True, exist_ok=True)
    write_trace(Path(directory) / f"{workload.name}__{scheduler}__{label}.arrow", run.trace.table, run.trace.meta)
    return round(float(run.trace.table.column("end_ns").to_numpy().max()) / 1e3, 2)


def probe_inputs(name: str):
    """The bench/ probes' inputs for a named workload: (workload, tensors with a shuffled block table, seed 0,
    the float32 reference O, its LSE)."""
    from mlaprof.reference import mla_decode_reference
    from mlaprof.workloads import NAMED, build_tensors

    w = NAMED[name]
    t = build_tensors(w, "cuda", seed=0, shuffle_pages=True)
    ref, ref_lse = mla_decode_reference(t)
    return w, t, ref, ref_lse


def checked_probe_kernel(enc, tensors, ref, launches: int = 5, timing: bool = False, build=None):
    """The bench/ probes' common first step: a Megakernel for an encoded schedule, launched ``launches`` times
    with the output poisoned first; returns (kernel, worst relative error). Raises SystemExit when a launch
    leaves a semaphore set (the next launch would start from it)."""
    import torch

    from mlaprof.kernel import DEFAULT_BUILD, Megakernel
    from mlaprof.reference import relative_error

    ins = torch.from_numpy(np.ascontiguousarray(enc.instructions))
    mk = Megakernel(ins, tensors, enc.num_slots, enc.num_sems, timing=timing, build=build or DEFAULT_BUILD)
    worst = 0.0
    for _ in range(launches):
        mk.out.fill_(float("nan"))
        mk.run()
        worst = max(worst, relative_error(mk.out.float(), ref))
        if int(mk.sems.abs().sum()):
            raise SystemExit("semaphores left set after a launch: the schedule or the kernel is broken")
    return mk, worst


def emit_probe_record(rec: dict, out: str | None = None) -> None:
    """A probe's result line: one JSON object on stdout, appended to the JSON-lines file ``out`` if given."""
    print(json.dumps(rec), flush=True)
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")


def time_probe_records(recs: list[dict], kernels, replays: int) -> list[dict]:
    """The bench/ probes' common last step: time one workload's megakernels interleaved by graph replay
    (``_interleaved_graph_us``), add ``us_graph`` and ``us_graph_gpu`` to each record, print each as a JSON
    line and return them."""
    times = _interleaved_graph_us([k.launch for k in kernels], replays, [k.check for k in kernels])
    for rec, (plain, covered) in zip(recs, times):
        rec.update(us_graph=round(plain, 2), us_graph_gpu=round(covered, 2))
        emit_probe_record(rec)
    return recs


def _interleaved_graph_us(fns: list[Callable[[], None]], replays: int,
                          checks: list[Callable[[], None]] | None = None) -> list[tuple[float, float]]:
    """Median graph-replay time of each of ``fns`` (uncovered, covered: see ``_replay_us``), measured in rounds that take every variant in turn (the
    order rotating per round), so that clock and thermal drift over the run falls on all of them alike:
    variants of one kernel (timing on/off, two schedulers) are compared on the same minute of the GPU.

    ``checks[i]`` (a ``Megakernel.check``) runs after the warm-up and after each of variant i's batches and
    raises ``KernelError`` if its last launch failed: a failed launch leaves semaphores set, so every replay
    after it would wait out the kernel's wait bound too, and the bench would look hung for minutes."""
    graphs = [_capture(f) for f in fns]
    for check in checks or ():
        check()
    times: list[list[float]] = [[] for _ in fns]
    covered: list[list[float]] = [[] for _ in fns]
    per_round = max(1, -(-replays // INTERLEAVE_ROUNDS))
    for r in range(INTERLEAVE_ROUNDS):
        for k in range(len(fns)):
            i = (k + r) % len(fns)
            plain, cov = _replays_us(graphs[i], per_round)
            times[i] += plain
            covered[i] += cov
            if checks:
                checks[i]()
    return [(statistics.median(t), statistics.median(c)) for t, c in zip(times, covered)]


def _median_plain_us(fn: Callable[[], None], launches: int) -> float:
    """Back-to-back launches, timed in batches of 10 so launch overhead overlaps as it would in a loop."""
    import torch

    for _ in range(3):
        fn()
    warmed = torch.cuda.Event()
    warmed.record()
    wait_for_gpu(warmed, "the warm-up launches before plain timing")
    per = []
    batch = 10
    for _ in range(max(1, launches // batch)):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(batch):
            fn()
        b.record()
        wait_for_gpu(b, "a batch of plain launches")
        per.append(a.elapsed_time(b) * 1e3 / batch)
    return statistics.median(per)


def _rates(e: Entry, w: Workload) -> Entry:
    us = e.us_graph if e.us_graph is not None else e.us_plain
    if us:
        e.tflops = round(w.flops / (us * 1e-6) / 1e12, 2)
        e.gbs = round(w.bytes / (us * 1e-6) / 1e9, 1)
        e.x_floor = round(us / w.hbm_floor_us(HBM_TBPS), 2)
    return e


# ---------------------------------------------------------------- entries


def megakernel_entries(w: Workload, tensors, ref, gpu: str, replays: int):
    import torch

    from mlaprof.kernel import KernelError, Megakernel
    from mlaprof.reference import relative_error
    from mlaprof.schedule import make_schedule
    from mlaprof.schedule.encode import encode

    num_sms = torch.cuda.get_device_properties(0).multi_processor_count
    entries, kernels, makespan_enc = [], [], None
    variants = []  # (scheduler, merges, tiles, encoded, schedule+encode ms, timing settings)
    for scheduler in ("static", "makespan"):
        t0 = time.perf_counter()
        wide = make_schedule(w, num_sms, scheduler, merges="wide")
        enc = encode(wide)
        sched_ms = (time.perf_counter() - t0) * 1e3
        makespan_enc = enc if scheduler == "makespan" else makespan_enc
        tiles = "steal" if wide.params.get("steal") else "fixed"
        variants.append((scheduler, "wide", tiles, enc, sched_ms, (False, True)))
        if wide.params.get("merges") == "wide":  # trees were flattened: time the trees too, the evidence for it
            t0 = time.perf_counter()
            tree = make_schedule(w, num_sms, scheduler, merges="tree")
            variants.append((scheduler, "tree", "steal" if tree.params.get("steal") else "fixed", encode(tree),
                             (time.perf_counter() - t0) * 1e3, (False,)))
        if tiles == "steal":  # and the planned ranges, the evidence for steal groups
            t0 = time.perf_counter()
            fixed = encode(make_schedule(w, num_sms, scheduler, merges="wide", steal=False))
            variants.append((scheduler, "wide", "fixed", fixed, (time.perf_counter() - t0) * 1e3, (False,)))
    for scheduler, merges, tiles, enc, sched_ms, timings in variants:
        instr = torch.from_numpy(np.ascontiguousarray(enc.instructions))
        for timing in timings:
            mk = Megakernel(instr, tensors, enc.num_slots, enc.num_sems, timing=timing)
            mk.out.fill_(float("nan"))
            mk.run()
            err = relative_error(mk.out.float(), ref)
            e = Entry(w.name, "megakernel", scheduler, merges, tiles, "on" if timing else "off", rel_err=err, gpu=gpu,
                      note=f"schedule+encode {sched_ms:.2f} ms (host)")
            entries.append(e)
            if err < 3e-3:
                kernels.append((e, mk))
            else:
                e.note = f"wrong result (rel err {err:.2e}): not timed"
    # the variants timed side by side (interleaved rounds): their differences are the point
    try:
        graph_us = _interleaved_graph_us([mk.launch for _, mk in kernels], replays, [mk.check for _, mk in kernels])
    except KernelError as err:
        for e, _ in kernels:
            e.note = f"a launch failed while timed, not timed: {err}"
        kernels = []
        graph_us = []
    for (e, _), (us, us_gpu) in zip(kernels, graph_us):
        e.us_graph, e.us_graph_gpu = us, us_gpu
        e.note += "; graph time interleaved with the other megakernel rows"
    for e, mk in kernels:
        e.us_plain = _median_plain_us(mk.launch, PLAIN_LAUNCHES)
        mk.run()  # a graph replay does not check status: do it once after
    for e in entries:
        yield _rates(e, w)
    yield two_launch_entry(w, tensors, ref, makespan_enc, gpu, replays)


def two_launch_entry(w, tensors, ref, enc, gpu, replays) -> Entry:
    """The classic split-KV design from the same ops: every partial in one launch, every reduction in a second."""
    import torch

    from mlaprof.kernel import KernelError, Megakernel
    from mlaprof.reference import relative_error

    ins = enc.instructions
    op = ins[..., fmt.Word.OPCODE]

    def only(opcode):
        out = np.zeros_like(ins)
        for sm in range(ins.shape[0]):
            rows = ins[sm][op[sm] == opcode]
            out[sm, : len(rows)] = rows
        return torch.from_numpy(out)

    first = Megakernel(only(fmt.Opcode.PARTIAL), tensors, enc.num_slots, enc.num_sems, timing=False)
    second = Megakernel(only(fmt.Opcode.REDUCTION), tensors, enc.num_slots, enc.num_sems, timing=False)
    for name in ("out", "out_lse", "scratch_o", "scratch_lse", "sems"):
        setattr(second, name, getattr(first, name))

    def both():
        first.launch()
        second.launch()

    first.out.fill_(float("nan"))
    first.run()
    second.run()
    err = relative_error(first.out.float(), ref)
    tiles = "steal" if (ins[..., fmt.Word.STEAL_MEMBERS] > 0).any() else "fixed"
    e = Entry(w.name, "two-launch split-KV", "makespan", "wide", tiles, "off", rel_err=err, gpu=gpu,
              note="same partial/reduction ops, partials then reductions as two launches")
    if err < 3e-3:
        def check():
            first.check()
            second.check()

        try:
            e.us_graph, e.us_graph_gpu = _interleaved_graph_us([both], replays, [check])[0]
        except KernelError as failed:
            e.note = f"a launch failed while timed, not timed: {failed}"
        else:
            e.us_plain = _median_plain_us(both, PLAIN_LAUNCHES)
    return _rates(e, w)


def sdpa_entry(w: Workload, tensors, ref, gpu: str, replays: int) -> Entry:
    """What a user without an MLA kernel writes: gather each sequence's KV (outside the timing), pad to the
    longest, and call scaled_dot_product_attention once with a causal-among-new-tokens mask."""
    import torch
    import torch.nn.functional as F

    from mlaprof.reference import gather_kv, relative_error

    b, s_q, h, d = tensors.q.shape
    max_len = max(w.lens)
    if b * max_len * d * 2 > 8 << 30:
        return Entry(w.name, "torch sdpa (gathered KV)", gpu=gpu, note="skipped: padded KV over 8 GB")
    kv = torch.zeros(b, 1, max_len, d, dtype=torch.bfloat16, device="cuda")
    mask = torch.zeros(b, 1, s_q, max_len, dtype=torch.bool, device="cuda")
    for i, n in enumerate(w.lens):
        kv[i, 0, :n] = gather_kv(tensors, i)
        limit = n - s_q + torch.arange(s_q, device="cuda")
        mask[i, 0] = torch.arange(max_len, device="cuda")[None, :] <= limit[:, None]
    # The heads share the one latent KV head: fold (token, head) into the query length of a single head.
    q = tensors.q.reshape(b, 1, s_q * h, d)
    mask_rows = mask.repeat_interleave(h, dim=2)
    v = kv[..., : w.dv]

    def call():
        return F.scaled_dot_product_attention(q, kv, v, attn_mask=mask_rows, scale=tensors.softmax_scale)

    out = call().reshape(b, s_q, h, w.dv)
    err = relative_error(out.float(), ref)
    e = Entry(w.name, "torch sdpa (gathered KV)", rel_err=err, gpu=gpu, note="KV gathered and padded outside the timing")
    e.us_graph, e.us_graph_gpu = _median_graph_us(call, replays)
    e.us_plain = _median_plain_us(call, PLAIN_LAUNCHES)
    return _rates(e, w)


def flashmla_entry(w: Workload, tensors, ref, gpu: str, replays: int) -> Entry:
    try:
        import flash_mla  # noqa: F401
    except ImportError:
        return Entry(w.name, "FlashMLA", gpu=gpu, note="not installed here (module flash_mla): skipped")
    from mlaprof.reference import relative_error

    b, s_q, h, d = tensors.q.shape
    meta, splits = flash_mla.get_mla_metadata(tensors.cache_seqlens, s_q * h, 1)
    k_cache = tensors.kv_cache.unsqueeze(2)  # [pages, 64, h_kv=1, d]

    def call():
        return flash_mla.flash_mla_with_kvcache(tensors.q, k_cache, tensors.block_table, tensors.cache_seqlens, w.dv,
                                                meta, splits, causal=True)[0]

    err = relative_error(call().float(), ref)
    e = Entry(w.name, "FlashMLA", rel_err=err, gpu=gpu)
    e.us_graph, e.us_graph_gpu = _median_graph_us(call, replays)
    e.us_plain = _median_plain_us(call, PLAIN_LAUNCHES)
    return _rates(e, w)


def flashinfer_entry(w: Workload, gpu: str) -> Entry:
    try:
        import flashinfer  # noqa: F401
    except ImportError:
        return Entry(w.name, "FlashInfer MLA", gpu=gpu, note="not installed here (module flashinfer): skipped")
    return Entry(w.name, "FlashInfer MLA", gpu=gpu, note="installed, but its paged-MLA wrapper is not wired here yet")


# ---------------------------------------------------------------- driver


def run_bench(workloads: list[Workload], replays: int = GRAPH_REPLAYS, progress=sys.stderr) -> list[Entry]:
    import torch

    from mlaprof.kernel import require_gpu
    from mlaprof.reference import mla_decode_reference
    from mlaprof.workloads import build_tensors

    require_gpu()
    gpu = torch.cuda.get_device_name()
    entries: list[Entry] = []
    steps = len(workloads) * 4
    done = 0
    for w in workloads:
        tensors = build_tensors(w, device="cuda", seed=0, shuffle_pages=True)
        ref, _ = mla_decode_reference(tensors)
        stages = [
            ("megakernel", lambda: list(megakernel_entries(w, tensors, ref, gpu, replays))),
            ("torch sdpa", lambda: [sdpa_entry(w, tensors, ref, gpu, replays)]),
            ("FlashMLA", lambda: [flashmla_entry(w, tensors, ref, gpu, replays)]),
            ("FlashInfer", lambda: [flashinfer_entry(w, gpu)]),
        ]
        for label, fn in stages:
            done += 1
            bar = "#" * (20 * done // steps)
            print(f"\r[{bar:<20}] {done}/{steps} {w.name}: {label:<12}", end="", file=progress, flush=True)
            entries.extend(fn())
        del tensors, ref
        torch.cuda.empty_cache()
    print(file=progress)
    return entries


def _label(e: Entry) -> str:
    return " ".join(x for x in (e.impl, e.scheduler, e.merges, e.tiles, e.timing) if x)


def to_markdown(entries: list[Entry]) -> str:
    lines = []
    for wname in dict.fromkeys(e.workload for e in entries):
        group = [e for e in entries if e.workload == wname]
        w = NAMED.get(wname)
        floor = f", HBM floor {w.hbm_floor_us(HBM_TBPS):.1f} us" if w else ""
        lines += [f"### {wname}{floor}", "",
                  "| impl | scheduler | merges | tiles | timing | us (graph) | us (graph, GPU only) | us (plain) | TFLOPS "
                  "| GB/s | x floor | rel err | note |",
                  "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        fmt_ = lambda v, p=1: "" if v is None else f"{v:.{p}f}"  # noqa: E731
        for e in group:
            lines.append(f"| {e.impl} | {e.scheduler} | {e.merges} | {e.tiles} | {e.timing} | {fmt_(e.us_graph)} | {fmt_(e.us_graph_gpu)} | {fmt_(e.us_plain)} | "
                         f"{fmt_(e.tflops)} | {fmt_(e.gbs, 0)} | {fmt_(e.x_floor, 2)} | "
                         f"{'' if e.rel_err is None else f'{e.rel_err:.1e}'} | {e.note} |")
        timed = [e for e in group if e.us_graph]
        if len(timed) > 1:
            lines += ["", "Speed-up (row over column, graph replay):", "",
                      "| | " + " | ".join(_label(e) for e in timed) + " |",
                      "| --- |" + " ---: |" * len(timed)]
            for a in timed:
                lines.append(f"| {_label(a)} | " +
                             " | ".join(f"{b.us_graph / a.us_graph:.2f}x" for b in timed) + " |")
        lines.append("")
    return "\n".join(lines)


def write_results(entries: list[Entry], out_dir: Path, stem: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    j = out_dir / f"{stem}.json"
    m = out_dir / f"{stem}.md"
    j.write_text(json.dumps([dataclasses.asdict(e) for e in entries], indent=1))
    m.write_text(to_markdown(entries))
    return j, m
