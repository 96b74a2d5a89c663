"""Two SMs, four tasks; every answer below is worked out by hand from the span list.

Tasks: 0 = partial seq 0 kv [0,64); 1 = partial seq 0 kv [64,160); 2 = reduction of 0 and 1 (seq 0, kv [0,160));
3 = partial seq 1 kv [0,32). Workload: lens (160, 32), s_q 1.

``build_a`` (times in ns):
  SM0 i0 task 0  [0,100]    setup [0,10], loads [10,40] [40,70], computes [40,60] [70,90], store [90,100]
  SM0 i1 task 2  [100,300]  setup [100,110], wait task 0 [110,110] (already released at 100: not binding),
                            wait task 1 [110,200] (released at 200: binding), load input 0 [120,140] during that
                            wait, load input 1 [200,220], merge [220,280], store [280,300]
  SM1 i0 task 1  [20,200]   setup [20,30], loads [30,60] [60,90] [90,120], computes [60,80] [90,110] [120,170],
                            store [180,200]
  SM1 i1 task 3  [200,250]  setup [200,205], load [205,225], compute [225,240], store [240,250]
  makespan 300; SM0 busy 230 (the wait [110,200] less the load [120,140] is 70 of wait), wait 70, idle 0;
  SM1 busy 220, wait 0, idle 80; finishes 300 and 250, imbalance 300/275.
  Critical path: SM0 i1 (ends last) waited for task 1 on SM1 -> SM1 i0, the first on its SM: [task 1 start,
  task 2 wait].

``build_b``: the same work with task ids renumbered (SM1 runs seq 1 first, then kv [64,160)), so matching must
go by what each instruction computes. SM1 i0 = seq 1 [20,70], SM1 i1 = kv [64,160) [70,250]; the reduction
waits until 250 and ends at 350. Critical path: [seq-1 partial start, kv [64,160) queue, reduction wait].
"""

from __future__ import annotations

from .builder import TraceBuilder, task

WORKLOAD = {"name": "golden-two-sm", "lens": [160, 32], "s_q": 1}


def _tasks(ids: dict[str, int]) -> list[dict]:
    t = [
        task(ids["p0"], "partial", 0, 0, 64),
        task(ids["p1"], "partial", 0, 64, 160),
        task(ids["red"], "reduction", 0, 0, 160, inputs=(ids["p0"], ids["p1"]), final=True),
        task(ids["s1"], "partial", 1, 0, 32, final=True),
    ]
    return sorted(t, key=lambda r: r["id"])


def _sm0(b: TraceBuilder, p0: int, p1: int, red: int, red_end_shift: int = 0, p1_release: int = 200) -> None:
    C, P, K = "controller", "producer", "consumer"
    (b.span(0, C, "instruction", 0, p0, 0, 100).span(0, C, "setup", 0, p0, 0, 10)
      .span(0, P, "load", 0, p0, 10, 40, aux=0).span(0, P, "load", 0, p0, 40, 70, aux=1)
      .span(0, K, "compute", 0, p0, 40, 60, aux=0).span(0, K, "compute", 0, p0, 70, 90, aux=1)
      .span(0, K, "store", 0, p0, 90, 100))
    d = red_end_shift
    (b.span(0, C, "instruction", 1, red, 100, 300 + d).span(0, C, "setup", 1, red, 100, 110)
      .span(0, C, "wait", 1, red, 110, 110, aux=0, wait_task=p0)
      .span(0, C, "wait", 1, red, 110, p1_release, aux=1, wait_task=p1)
      .span(0, P, "load", 1, red, 120, 140, aux=0).span(0, P, "load", 1, red, 200 + d, 220 + d, aux=1)
      .span(0, K, "compute", 1, red, 220 + d, 280 + d, aux=0).span(0, K, "store", 1, red, 280 + d, 300 + d))


def _partial_kv64(b: TraceBuilder, instr: int, tid: int, t0: int) -> None:
    """kv [64,160) on SM1, 180 ns long, starting at t0 (task 1 of build_a)."""
    C, P, K = "controller", "producer", "consumer"
    o = t0 - 20
    (b.span(1, C, "instruction", instr, tid, 20 + o, 200 + o).span(1, C, "setup", instr, tid, 20 + o, 30 + o)
      .span(1, P, "load", instr, tid, 30 + o, 60 + o, aux=0).span(1, P, "load", instr, tid, 60 + o, 90 + o, aux=1)
      .span(1, P, "load", instr, tid, 90 + o, 120 + o, aux=2)
      .span(1, K, "compute", instr, tid, 60 + o, 80 + o, aux=0).span(1, K, "compute", instr, tid, 90 + o, 110 + o, aux=1)
      .span(1, K, "compute", instr, tid, 120 + o, 170 + o, aux=2).span(1, K, "store", instr, tid, 180 + o, 200 + o))


def _partial_seq1(b: TraceBuilder, instr: int, tid: int, t0: int, length: int = 50) -> None:
    """seq 1 kv [0,32) on SM1 starting at t0; ``length`` stretches its compute (50 ns by default)."""
    C, P, K = "controller", "producer", "consumer"
    x = length - 50
    (b.span(1, C, "instruction", instr, tid, t0, t0 + 50 + x).span(1, C, "setup", instr, tid, t0, t0 + 5)
      .span(1, P, "load", instr, tid, t0 + 5, t0 + 25, aux=0)
      .span(1, K, "compute", instr, tid, t0 + 25, t0 + 40 + x, aux=0)
      .span(1, K, "store", instr, tid, t0 + 40 + x, t0 + 50 + x))


def build_a(tail: int = 50, **meta) -> TraceBuilder:
    """The trace of the module docstring; ``tail`` > 100 makes seq 1 (SM1 i1) end last instead."""
    ids = {"p0": 0, "p1": 1, "red": 2, "s1": 3}
    b = TraceBuilder(WORKLOAD, 2, _tasks(ids), scheduler="golden-a", **meta)
    _sm0(b, 0, 1, 2)
    _partial_kv64(b, 0, 1, 20)
    _partial_seq1(b, 1, 3, 200, tail)
    return b


def build_b(**meta) -> TraceBuilder:
    ids = {"p0": 10, "p1": 13, "red": 12, "s1": 11}
    b = TraceBuilder(WORKLOAD, 2, _tasks(ids), scheduler="golden-b", **meta)
    _sm0(b, 10, 13, 12, red_end_shift=50, p1_release=250)
    _partial_seq1(b, 0, 11, 20)
    _partial_kv64(b, 1, 13, 70)
    return b
