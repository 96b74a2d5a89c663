"""The makespan-backwards scheduler (DESIGN §5).

Plan from the end, in reversed time (0 = the makespan T, growing towards the kernel's start):

1. Shape.  Each sequence is whole (one partial writing the output) or split over ``m`` partials merged by a
   reduction tree of fan-in <= k (below).  *Filler* sequences' partials get no fixed size yet; the other
   split sequences are cut into equal chunks of ``chunk`` tiles.
2. Tail.  Reductions (roots first) and the fixed chunks are list-scheduled backwards: an input may run only
   once its reduction has been placed, a semaphore latency earlier; each goes to the SM free earliest in
   reversed time.  This puts merges and short chunks at the end of the kernel.
3. Fill.  Each filler partial gets an SM (deepest deadlines paired with the busiest tails) and then as many
   KV tiles as fit between the kernel's start and the later of its deadline and its SM's tail; T is the
   smallest makespan at which every filler's tiles fit.  The SMs that host the deep leaves of a long
   sequence run its partials first and merges and short work after, and every SM ends near T.
4. Whole sequences go, longest first, where the most time is left before T (LPT), ahead of the rest.

Trees are of least depth, with as many of the last leaves as the depth allows hung one level higher (they
end a merge earlier, so the fill gives them more tiles).  Reductions are whole (all s_q tokens) or one tree
per query token sharing the partials (16-row merges on s_q SMs at once), as the cost model prefers
(``static.prefer_per_token``).

Rollouts: a few shapes are planned (``candidates``: every long sequence fills a share of the SMs chosen by
bisection on T, the others whole; the longest fills what equal chunks of the rest (half or a whole SM's
share) leave; no filler, short equal chunks), the one with the smallest closed-form T is timed on the
task-level timeline (``plan.evaluate``, which tracks the simulator), and so is the static schedule; the
fastest wins, so it never loses to static.  Shapes are planned in order of a closed-form bound on T
(``_work_bound``) and those that cannot beat the best T planned so far are not planned at all.  Queue order
is planned start order: every wait points at work planned to end earlier, so the per-SM orders cannot
deadlock.

SMs of different rates (``spread``): the planner assumes equal SMs.  Before timing, each rollout's queues
(and the static schedule's, as a further rollout) are permuted over the SMs so that the most streaming runs
on the fastest (``spread.relabel``); and where the SMs that end last each run one whole sequence, the slowest
hand a few tiles of it to fast SMs (``spread.offload``).  Each is timed and kept only if it ends sooner.
Both come from the cost model's per-SM rates
(``CostModel.sm_factors``) and do nothing when its ``sm_spread`` is 0.  They are off unless asked for
(``sm_rates=True``): the model's rates say how much SMs differ, not which SM is slow, and the kernel maps
queue i to block i, not to a measured SM.  On the H100 the offload made b132-4096-q4 6% slower (250 vs 236 us,
bench/NOTES.md), so by default the schedulers plan for equal SMs.
"""

from __future__ import annotations

import bisect
import heapq
import math
import time

import numpy as np

from mlaprof import format as fmt
from mlaprof.costmodel import CostModel, resolve
from mlaprof.schedule.native import calls as native
from mlaprof.schedule.plan import ScheduleError, TaskCosts, build_tasks, task_costs, tasks_from_lists, timeline
from mlaprof.schedule.spread import offload, relabel
from mlaprof.schedule.static import best_static_plan, group_sizes, merge_levels, prefer_per_token
from mlaprof.schedule.tasks import Schedule
from mlaprof.workloads import Workload

TILE = fmt.KV_TILE_TOKENS
PARTIAL, REDUCTION = int(fmt.Opcode.PARTIAL), int(fmt.Opcode.REDUCTION)
MIN_TILE_NS = 1e-3  # the planner's floor on a tile's cost: it divides time by it, and a model whose tiles cost
# nothing (every load and compute constant at 0) then still packs tiles, 1 ps each, instead of dividing by 0
TIMED = 1  # rollouts timed on the task-level timeline (those with the smallest closed-form T; a second one
# changed the answer in 1 of 29 golden cases, by 0.75%, at the cost of a materialisation and a timeline)


class _Costs:
    """The planner's affine costs for one workload's row count (ns); reductions also for per-token rows."""

    def __init__(self, cost: CostModel, rows: int):
        self.cost, self.rows = cost, rows
        self.a_p, tau = cost.partial_linear(rows, final=False)
        self.tau = max(tau, MIN_TILE_NS)
        self.a_f, _ = cost.partial_linear(rows, final=True)
        self.lag = cost.sem_latency_ns - cost.reduce_setup_ns  # input end -> reduction start (setup overlaps the wait)
        row_counts = sorted({fmt.NUM_HEADS_Q, rows})
        # every (rows, final, fan-in) in one call: elementwise, so the same values as one call per row count
        table = cost.reduction_ns(np.arange(fmt.MAX_FANIN + 1)[None, None, :], np.asarray(row_counts)[:, None, None],
                                  np.asarray([False, True])[None, :, None])
        self.red_scratch = {r: table[j, 0] for j, r in enumerate(row_counts)}  # indexed by fan-in
        self.red_final = {r: table[j, 1] for j, r in enumerate(row_counts)}
        self.red = {(k, f, r): v for r in row_counts for f, arr in ((False, self.red_scratch[r]), (True, self.red_final[r]))
                    for k, v in enumerate(arr.tolist()) if k >= 1}


def _tree(m: int, k: int) -> list[tuple[list[tuple[bool, int]], bool]]:
    """k-ary tree of least depth D over m leaves, bottom-up: [(inputs as (is_reduction, index), is_root)].

    As many leaves as the depth allows (the last ones) skip the bottom level and hang one level higher:
    each ends a merge earlier, so the fill gives it more KV tiles, and the tree has fewer reductions.  The
    leaves of every reduction stay consecutive (its KV range is contiguous)."""
    reds: list[tuple[list[tuple[bool, int]], bool]] = []
    depth, cap = 0, 1
    while cap < m:
        depth, cap = depth + 1, cap * k
    skip = 0
    if depth >= 2:  # largest x with x + ceil((m - x) / k) <= k^(D-1), keeping >= 2 leaves per bottom group
        upper = cap // k
        skip = max(0, min(m - 2, (upper * k - m) // (k - 1)))
        while skip > 0 and skip + -(-(m - skip) // k) > upper:
            skip -= 1
    bottom = m - skip
    frontier: list[tuple[bool, int]] = []
    if skip:
        for size in group_sizes(bottom, k):
            start = sum(len(r[0]) for r in reds)
            reds.append(([(False, i) for i in range(start, start + size)], False))
            frontier.append((True, len(reds) - 1))
        frontier += [(False, i) for i in range(bottom, m)]
    else:
        frontier = [(False, i) for i in range(m)]

    def merge(group: list[tuple[bool, int]], root: bool, _level: int) -> tuple[bool, int]:
        reds.append((group, root))
        return (True, len(reds) - 1)

    merge_levels(frontier, k, merge)
    return reds


def _solve_fill(starts: list[float], tiles: int, c: _Costs) -> float:
    """Smallest T at which sum_l floor((T - start_l - a_p) / tau)^+ >= tiles.  Plain Python: a filler has
    from two to a few hundred leaves, where numpy's per-call cost would dominate."""
    a, tau = c.a_p, c.tau
    order = sorted(starts)
    cum = [0.0]
    for x in order:
        cum.append(cum[-1] + x)
    # continuous solution over the leaves that get anything, then round up to whole tiles
    t = 0.0
    for n in range(len(order), 0, -1):
        t = (tiles * tau + cum[n] + n * a) / n
        if t - order[n - 1] - a >= 0:
            break
    for _ in range(4 * len(order) + 8):
        xs = [(t - s - a) / tau for s in starts]
        deficit = tiles - sum(int(x) for x in xs if x > 0)
        if deficit <= 0:
            return t
        frac = sorted((x - math.floor(x) for x in xs if x > -1), reverse=True)
        t += (1.0 - frac[deficit - 1]) * tau + 1e-6 if deficit <= len(frac) else tau
    return t


def _trim(n: list[int], total: int) -> list[int]:
    """Cut the largest entries of ``n`` down to a common level until they sum to ``total`` (the chunks that
    would end latest give up tiles first, so a filler's SMs end together below T)."""
    if sum(n) <= total:
        return n
    lo, hi = 0, max(n)  # smallest cap with sum(min(n, cap)) >= total
    while lo < hi:
        mid = (lo + hi) // 2
        if sum(x if x < mid else mid for x in n) >= total:
            hi = mid
        else:
            lo = mid + 1
    out = [x if x < lo else lo for x in n]
    excess = sum(out) - total
    for j in range(len(out) - 1, -1, -1):  # from the deepest (last) leaves first
        if excess == 0:
            break
        if out[j] == lo:
            out[j] -= 1
            excess -= 1
    return out


def _plan(lens, tiles, num_sms: int, c: _Costs, m_fill: dict[int, int], chunk: int, k: int, copies: int,
          tree_memo: dict | None = None) -> dict:
    """One rollout: shape, tail, fill.  ``m_fill``: filler sequence -> its number of partials; ``copies``:
    1 (whole reductions) or s_q (one tree per query token, the trees sharing the partials).  ``tree_memo``:
    (leaves, fan-in) -> tree, shared by one call's rollouts (trees of a size repeat across sequences and
    shapes).  Returns the plan with its makespan target ``T`` (ns)."""
    rrows = c.rows // copies
    b = len(lens)
    tiles_l = tiles.tolist()  # Python ints: per-element numpy scalars cost more than the loops' arithmetic
    fillers = [i for i, m in m_fill.items() if m >= 2]
    fill_set = set(fillers)
    leaves = {}  # seq -> list of tile counts (None: filler, sized later)
    for i in range(b):
        if i in fill_set and m_fill[i] >= 2:
            leaves[i] = [None] * m_fill[i]
        else:
            m = max(1, -(-tiles_l[i] // chunk))
            base, extra = divmod(tiles_l[i], m)
            leaves[i] = [base + (1 if j < extra else 0) for j in range(m)]
    memo = {} if tree_memo is None else tree_memo
    trees = {}
    for i, v in leaves.items():
        if len(v) > 1:
            key = (len(v), k)
            if key not in memo:
                memo[key] = _tree(len(v), k)
            trees[i] = memo[key]

    # ---- tail: reversed list scheduling of reductions and fixed partials ------------------------------
    sm_heap = [(0.0, s) for s in range(num_sms)]
    place = {}  # ("r", seq, idx, q) | ("p", seq, leaf) -> (sm, rev_start, rev_end)
    # per split sequence, per leaf: the reversed time it may start (its deadline: the latest of its readers'
    # ends plus the lag) and its readers not placed yet (a leaf waits for all of its per-token readers);
    # ``first_read`` lists the leaves in the order their deadline was first set
    rho_l = {i: [0.0] * len(leaves[i]) for i in trees}
    pend_l = {i: [copies] * len(leaves[i]) for i in trees}
    first_read = []
    ready = []
    # per tree: each reduction's planned ns and its inputs split into reductions and leaves
    red_ns, lag, a_p, tau = c.red, c.lag, c.a_p, c.tau
    shape = {}
    for i, reds in trees.items():
        key = ("shape", len(leaves[i]), k, rrows)
        if key not in memo:
            memo[key] = [(red_ns[(len(ins), root, rrows)], [j for is_r, j in ins if is_r],
                          [j for is_r, j in ins if not is_r]) for ins, root in reds]
        shape[i] = memo[key]
        for q in range(copies):
            ready.append((0.0, i, len(reds) - 1, True, q))
    heapq.heapify(ready)
    pop, push = heapq.heappop, heapq.heappush
    while ready:
        r_time, i, idx, is_red, q = pop(ready)
        free, s = pop(sm_heap)
        start = free if free > r_time else r_time
        if is_red:
            dur, red_in, leaf_in = shape[i][idx]
            end = start + dur
            place[("r", i, idx, q)] = (s, start, end)
            dl = end + lag
            for j in red_in:
                push(ready, (dl, i, j, True, q))
            if leaf_in:
                rho_i, pend_i, fixed = rho_l[i], pend_l[i], leaves[i][0] is not None
                for j in leaf_in:
                    left = pend_i[j] - 1
                    pend_i[j] = left
                    if left == copies - 1:  # its first reader sets its first deadline (even one <= 0: free
                        first_read.append((i, j))  # merges with a negative lag)
                    if dl > rho_i[j]:
                        rho_i[j] = dl
                    if left == 0 and fixed:
                        push(ready, (rho_i[j], i, j, False, 0))
        else:
            end = start + a_p + leaves[i][idx] * tau
            place[("p", i, idx)] = (s, start, end)
        push(sm_heap, (end, s))
    tail = np.zeros(num_sms)
    for free, s in sm_heap:
        tail[s] = free

    # ---- fill: filler leaves onto the least busy SMs, deepest deadline with the busiest of those ---------
    T = float(tail.max())
    rho = {key: rho_l[key[0]][key[1]] for key in first_read if leaves[key[0]][0] is None}  # the fillers' leaves
    keys = sorted(rho, key=lambda key: -rho[key])
    sm_of_leaf, start_of_leaf = {}, {}
    used = tail.copy()
    if keys:
        if len(keys) > num_sms:
            return None  # more filler leaves than SMs (tiny sequences, free merges): this shape cannot be placed
        sms = np.argsort(tail, kind="stable")[: len(keys)][::-1]
        for key, s in zip(keys, sms):
            sm_of_leaf[key] = int(s)
            start_of_leaf[key] = max(float(tail[s]), rho[key])
        starts = {i: [start_of_leaf[(i, j)] for j in range(len(leaves[i]))] for i in fillers}
        for i in fillers:
            T = max(T, _solve_fill(starts[i], int(tiles[i]), c))
        for i in fillers:
            st = starts[i]
            n = _trim([max(0, int((T - x - c.a_p) / c.tau)) for x in st], int(tiles[i]))
            leaves[i] = n
            for j, x in enumerate(n):
                if x > 0:
                    s = sm_of_leaf[(i, j)]
                    used[s] = max(used[s], st[j] + c.a_p + x * c.tau)

    elif fillers:
        return None  # fillers whose leaves nobody reads stay unsized: this shape cannot be placed (core: E_SKIP)

    # ---- whole sequences, longest first, into the most time left before T (LPT) ------------------------
    heap = [(float(used[s]), s) for s in range(num_sms)]
    heapq.heapify(heap)
    for i in sorted((i for i in range(b) if len(leaves[i]) == 1), key=lambda i: -tiles_l[i]):
        top, s = heapq.heappop(heap)
        end = top + c.a_f + tiles_l[i] * c.tau
        place[("w", i, 0)] = (s, top, end)  # reversed: it runs before everything already on this SM
        heapq.heappush(heap, (end, s))
        T = max(T, end)
    return {"T": T, "copies": copies, "leaves": leaves, "trees": trees, "place": place, "sm_of_leaf": sm_of_leaf,
            "start_of_leaf": start_of_leaf, "fillers": fillers, "chunk": chunk, "k": k}


def _materialise(plan: dict, lens, num_sms: int, c: _Costs, s_q: int):
    """Tasks (columns) and per-SM queues ordered by planned forward start."""
    T = plan["T"]
    copies = plan["copies"]
    op, seq_of, kv0, kv1, inputs, final, sm_of, fstart, q0, qn = [], [], [], [], [], [], [], [], [], []

    def add(o, s, a, bnd, ins, f, sm, start, q=0, n=s_q):
        op.append(o)
        seq_of.append(s)
        kv0.append(a)
        kv1.append(bnd)
        inputs.append(ins)
        final.append(f)
        sm_of.append(sm)
        fstart.append(start)
        q0.append(q)
        qn.append(n)
        return len(op) - 1

    for i, tl in plan["leaves"].items():
        length = int(lens[i])
        if i not in plan["trees"]:
            s, rs, re_ = plan["place"][("w", i, 0)]
            add(PARTIAL, i, 0, length, (), True, s, T - re_)
            continue
        leaf_task, pos = [], 0
        for j, n in enumerate(tl):
            if n <= 0:
                leaf_task.append(-1)
                continue
            a, bnd = pos * TILE, min(length, (pos + n) * TILE)
            pos += n
            if ("p", i, j) in plan["place"]:
                s, rs, re_ = plan["place"][("p", i, j)]
                start = T - re_
            else:
                s = plan["sm_of_leaf"][(i, j)]
                start = T - plan["start_of_leaf"][(i, j)] - (plan["c"].a_p + n * plan["c"].tau)
            leaf_task.append(add(PARTIAL, i, a, bnd, (), False, s, start))
        if pos * TILE < length:  # cannot happen: fill sizes add up; a loud failure beats a silent gap
            raise ScheduleError(f"internal: sequence {i} planned {pos} of {-(-length // TILE)} tiles")
        # the tree's reductions resolved once (inputs of no tiles dropped, merges of one input passed up), then
        # appended per query token with the reductions' ids shifted: ref >= 0 a leaf task, ~r the r-th merge
        ref: list = []
        merges = []  # (tree index, input refs, kv0, kv1)
        for ins, root in plan["trees"][i]:
            refs = [ref[j] if is_r else (leaf_task[j] if leaf_task[j] >= 0 else None) for is_r, j in ins]
            refs = [r for r in refs if r is not None]
            if len(refs) <= 1:
                ref.append(refs[0] if refs else None)
                continue
            lo = min(kv0[r] if r >= 0 else merges[~r][2] for r in refs)
            hi = max(kv1[r] if r >= 0 else merges[~r][3] for r in refs)
            merges.append((len(ref), refs, lo, hi))
            ref.append(~(len(merges) - 1))
        place = plan["place"]
        for q in range(copies):
            base = len(op)
            qa, qb = (q, 1) if copies > 1 else (0, s_q)
            for idx, refs, lo, hi in merges:
                s, rs, re_ = place[("r", i, idx, q)]
                add(REDUCTION, i, lo, hi, tuple(r if r >= 0 else base + ~r for r in refs), False, s, T - re_, qa, qb)
            root = ref[-1]
            final[-1 if root is None else (root if root >= 0 else base + ~root)] = True
    queues: list[list[int]] = [[] for _ in range(num_sms)]
    for t in np.argsort(np.asarray(fstart, dtype=float), kind="stable").tolist():  # stable: ties keep task order
        queues[sm_of[t]].append(t)
    return op, seq_of, kv0, kv1, inputs, final, sm_of, queues, q0, qn


def _work_bound(tiles: np.ndarray, num_sms: int, c: _Costs, m_fill: dict[int, int], chunk: int, k: int,
                copies: int, tree_memo: dict) -> float:
    """A lower bound on the T ``_plan`` returns for this shape: its work over the SMs.  Every planned task
    (tail reductions and chunks, filler leaves, whole sequences) sits on one SM inside [0, T], none
    overlapping, so T >= (all tiles x tau + each partial's fixed cost + every reduction) / SMs; a filler
    counts one fixed cost (its leaves' tiles are not sized yet).  Also T >= any whole sequence alone."""
    rrows = c.rows // copies
    m = np.maximum(1, -(-tiles // chunk))
    is_fill = np.zeros(len(tiles), dtype=bool)
    for i, mf in m_fill.items():
        if mf >= 2:
            m[i], is_fill[i] = mf, True
    whole = m == 1
    work = float(tiles.sum()) * c.tau + int(whole.sum()) * c.a_f + float(np.where(is_fill, 1, m)[~whole].sum()) * c.a_p
    sizes, counts = np.unique(m[~whole], return_counts=True)
    for size, count in zip(sizes.tolist(), counts.tolist()):
        key = (size, k)
        if key not in tree_memo:
            tree_memo[key] = _tree(size, k)
        reds = 0.0  # added left to right (sum() of floats is compensated from Python 3.12: not what the C adds)
        for ins, root in tree_memo[key]:
            reds += c.red[(len(ins), root, rrows)]
        work += copies * count * reds
    longest_whole = float(tiles[whole].max()) * c.tau + c.a_f if whole.any() else 0.0
    return max(work / num_sms, longest_whole, _depth_bound(tiles, m, is_fill, c, k, rrows))


def _depth_bound(tiles: np.ndarray, m: np.ndarray, is_fill: np.ndarray, c: _Costs, k: int, rrows: int) -> float:
    """T >= each split sequence's leaves plus the merges above its shallowest leaf.  A leaf's deadline (rho)
    is at least the sum of (merge + lag) along its path, each merge at least a 2-input one, and the path of
    a tree of depth D over m leaves has at least max(1, D - 1) merges (``_tree`` hangs some leaves one level
    up), the root's writing the output.  A filler's m leaves share its tiles, so one has >= tiles / m of
    them (``_solve_fill``: T >= a_p + min rho + tiles * tau / m); a fixed-chunk sequence has a chunk of
    ceil(tiles / m) tiles."""
    split = m > 1
    if not split.any():
        return 0.0
    ms, ts = m[split].astype(float), tiles[split].astype(float)
    depth = np.ceil(np.log(ms) / math.log(k) - 1e-9)  # least D with k^D >= m
    levels = np.maximum(1.0, depth - 1.0)
    path = (c.lag + c.red[(2, True, rrows)]) + (levels - 1.0) * (c.lag + c.red[(2, False, rrows)])
    leaf = np.where(is_fill[split], ts / ms, np.ceil(ts / ms)) * c.tau
    return float((c.a_p + leaf + path).max())


def tree_depth_ns(c: _Costs, m: np.ndarray, k: int, rows: int) -> np.ndarray:
    """Deadline offset of the leaves of a balanced k-ary tree over m leaves (m >= 2): the sum of the edges
    (reduction + latency) of its levels, each at the level's largest fan-in; the root writes the output."""
    out = np.zeros(len(m))
    n = m.astype(np.int64)
    while (n > 1).any():
        groups = -(-n // k)
        fan = np.where(n > 1, -(-n // groups), 1)
        root = (groups == 1) & (n > 1)
        edge = np.where(root, c.red_final[rows][fan], c.red_scratch[rows][fan]) + c.lag
        out += np.where(n > 1, edge, 0.0)
        n = groups
    return out


def balanced_fillers(tiles: np.ndarray, num_sms: int, c: _Costs, k: int, rows: int) -> dict[int, int]:
    """Split counts that equalise the sequences' makespans: bisect on T, each sequence taking the fewest SMs
    with which its own tree (of ``rows``-row reductions) ends by T; sequences that fit whole by T stay whole."""
    m = np.arange(1, num_sms + 1)
    depth = tree_depth_ns(c, np.maximum(m, 2), k, rows)
    t_seq = tiles[:, None] * c.tau / m[None, :] + depth[None, :] + c.a_p  # [b, S]
    t_seq[:, 0] = c.a_f + tiles * c.tau
    whole_ns = t_seq[:, 0]
    # a sequence needs the fewest SMs whose time is within the target, i.e. one more than the leading
    # entries of its running minimum that exceed it: a bisection on the negated (ascending) running minima,
    # in plain Python (numpy calls on these small rows cost more than the bisection's whole arithmetic)
    falling = (-np.minimum.accumulate(t_seq, axis=1)).tolist()
    whole_l = whole_ns.tolist()

    def needs(target):
        return [k + 1 if k < num_sms else 0 for k in (bisect.bisect_left(row, -target) for row in falling)]

    def fits(target):
        need = needs(target)
        if not all(need):
            return False
        w = [x for x, n in zip(whole_l, need) if n == 1]
        # whole sequences need SMs of their own: at least their total over T, and one each above T/2 (the total
        # as numpy sums it, pairwise, as an array's sum did before)
        bins = max(math.ceil(np.add.reduce(np.asarray(w, dtype=float)) / target), sum(x > 0.5 * target for x in w))
        return sum(n for n in need if n > 1) + bins <= num_sms

    lo = float(tiles.sum() * c.tau / num_sms)
    hi = float(whole_ns.max() + whole_ns.sum() / num_sms)
    for _ in range(40):
        if hi - lo <= 0.05 * c.tau:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return {i: n for i, n in enumerate(needs(hi)) if n > 1}


def candidates(tiles: np.ndarray, num_sms: int, c: _Costs, s_q: int,
               per_token: tuple[bool, ...] = (False, True)) -> list[tuple[str, dict[int, int], int, int, int]]:
    """Rollout shapes: (name, filler -> split count, chunk tiles for the others, fan-in, reduction copies),
    for each choice in ``per_token`` (whole reductions, or when s_q > 1 one tree per query token)."""
    k = fmt.MAX_FANIN
    per_sm = max(1, int(round(tiles.sum() / num_sms)))
    half = max(1, per_sm // 2)
    longest = int(np.argmax(tiles))
    out = []
    for copies in sorted({s_q if pt and s_q > 1 else 1 for pt in per_token}):
        rrows = c.rows // copies
        if num_sms >= 2:
            # every long sequence fills its share of the SMs; the others stay whole
            out.append(("fill-all", balanced_fillers(tiles, num_sms, c, k, rrows), int(tiles.max()) + 1, k, copies))
            # the longest sequence fills whatever the others leave; they are cut into short chunks
            out.append(("fill-longest", {longest: int(min(num_sms, tiles[longest]))}, half, k, copies))
            if per_sm > half:  # the others in chunks of a full SM's share: fewer partials, fewer merges
                out.append(("fill-longest", {longest: int(min(num_sms, tiles[longest]))}, per_sm, k, copies))
        out.append(("chunks", {}, half, k, copies))  # no filler: short equal chunks, packed backwards
    return out


def _distinct(cands: list, tiles: np.ndarray) -> list:
    """The candidates less those that plan exactly like an earlier one: ``_plan`` reads a shape's chunk only
    through the partial counts it gives the sequences that do not fill (one sequence filling every SM is
    the same plan under every chunk).  The first of equals is kept, as the tie-break by order would."""
    seen, out = set(), []
    for name, m_fill, chunk, k, copies in cands:
        fill = {i: m for i, m in m_fill.items() if m >= 2}
        rest = np.maximum(1, -(-tiles // chunk))
        rest[list(fill)] = 0
        key = (tuple(sorted(fill.items())), rest.tobytes(), k, copies)
        if key not in seen:
            seen.add(key)
            out.append((name, m_fill, chunk, k, copies))
    return out


def _sm_of(queues: list[list[int]], n: int) -> list[int]:
    sm_of = [0] * n
    for sm, q in enumerate(queues):
        for t in q:
            sm_of[t] = sm
    return sm_of


def _costs(cols: dict, cost: CostModel) -> TaskCosts:
    op, inputs = cols["op"], cols["inputs"]
    return task_costs(op, np.asarray(cols["kv1"]) - np.asarray(cols["kv0"]), [len(i) for i in inputs], cols["final"],
                      np.asarray(cols["qn"]) * fmt.NUM_HEADS_Q, cost)


def _timed(cols: dict, params: dict, costs: TaskCosts, order: int):
    """(span, order, params, columns, start, end): the columns timed on the task-level timeline (``costs``:
    their ``plan.task_costs``, shared by layouts of one task set)."""
    start, end = timeline(costs, cols["inputs"], cols["queues"])
    return float(end.max()), order, params, cols, start, end


def makespan_schedule(workload: Workload, num_sms: int, cost: CostModel | None = None,
                      per_token: bool | None = None, sm_rates: bool = False) -> Schedule:
    """``per_token``: None lets the cost model choose between whole and per-token reductions."""
    t0 = time.perf_counter()
    cost = resolve(cost)
    if num_sms < 1:
        raise ScheduleError(f"need at least 1 SM, got {num_sms}")
    if not sm_rates:  # the same search in C, where built (per-SM placement stays in Python)
        found = native.makespan(workload, num_sms, cost, per_token, TIMED)
        if found is not None:
            cols, params = found
            return Schedule(
                workload=workload, num_sms=num_sms, queues=cols["queues"], scheduler="makespan",
                tasks=tasks_from_lists(*(cols[k] for k in native.COLUMNS)), params=params,
                predicted_makespan_us=max(cols["end_us"]), compute_ms=(time.perf_counter() - t0) * 1e3,
            )
    s_q = workload.s_q
    rows = s_q * fmt.NUM_HEADS_Q
    c = _Costs(cost, rows)
    lens = workload.lens
    tiles = -(-np.asarray(lens, dtype=np.int64) // TILE)
    # rollouts: plan every shape (closed-form T), then time the most promising ones on the timeline
    trees: dict = {}
    # whole or per-token reductions: the kind whose tree level ends sooner (as static chooses)
    choice = (prefer_per_token(workload, cost),) if per_token is None else (per_token,)
    cands = _distinct(candidates(tiles, num_sms, c, s_q, choice), tiles)
    # Plan the shapes in order of a closed-form lower bound on their T, and skip every shape whose bound
    # already exceeds the TIMED-th smallest T planned: it could not be among the timed ones.  The timed set
    # and its order (T, then candidate order) are what planning every shape gives.
    bounds = [_work_bound(tiles, num_sms, c, m_fill, chunk, k, copies, trees) for _, m_fill, chunk, k, copies in cands]
    plans = []
    for n in sorted(range(len(cands)), key=lambda n: bounds[n]):
        if len(plans) >= TIMED and bounds[n] * (1 - 1e-9) > sorted(p["T"] for p in plans)[TIMED - 1]:
            break
        name, m_fill, chunk, k, copies = cands[n]
        plan = _plan(lens, tiles, num_sms, c, m_fill, chunk, k, copies, trees)
        if plan is None:
            continue  # skipped (the native core skips it too)
        plans.append(plan)
        plans[-1]["shape"], plans[-1]["order"] = name, n
    plans.sort(key=lambda p: (p["T"], p["order"]))
    timed = []  # (span, order, params, columns, start, end)
    for plan in plans[:TIMED]:
        plan["c"] = c
        op, seq_of, kv0, kv1, inputs, final, sm_of, queues, q0, qn = _materialise(plan, lens, num_sms, c, s_q)
        params = {"rollouts": len(cands) + 1, "shape": plan["shape"], "fillers": len(plan["fillers"]),
                  "fanin": plan["k"], "reductions": "per-token" if plan["copies"] > 1 else "whole",
                  "planned_us": round(float(plan["T"]) / 1e3, 3)}
        if plan["shape"] != "fill-all":
            params["chunk_tokens"] = plan["chunk"] * TILE
        cols = {"op": op, "seq": seq_of, "kv0": kv0, "kv1": kv1, "inputs": inputs, "final": final, "q0": q0,
                "qn": qn, "queues": queues}
        costs = _costs(cols, cost)
        timed.append(_timed(cols, params, costs, len(timed)))
        # the plan assumed equal SMs: its queues on the SMs by their streaming rates, timed too (the
        # permutation is a heuristic and can lose, e.g. on few SMs with long queues)
        moved = relabel(op, [b - a for a, b in zip(kv0, kv1)], queues, cost) if sm_rates else None
        if moved is not None:
            timed.append(_timed({**cols, "queues": moved}, {**params, "sm_order": "by-rate"}, costs, len(timed)))
    # the static schedule is one more rollout (as it is, and on the SMs by rate): where no backward plan
    # beats it, it is the answer
    base = best_static_plan(workload, num_sms, cost, per_token=choice[0])  # the kind static would choose
    base_params = {"rollouts": len(cands) + 1, "shape": "static", "chunk_tokens": base["chunk"],
                   "reductions": "per-token" if base["per_token"] else "whole"}
    base_cols = {k: base[k] for k in ("op", "seq", "kv0", "kv1", "inputs", "final", "q0", "qn", "queues")}
    timed.append((float(base["end"].max()), len(timed), base_params, base_cols, base["start"], base["end"]))
    moved = relabel(base["op"], base["kv1"] - base["kv0"], base["queues"], cost) if sm_rates else None
    if moved is not None:
        timed.append(_timed({**base_cols, "queues": moved}, {**base_params, "sm_order": "by-rate"}, base["costs"],
                            len(timed)))
    span, _, params, cols, start, end = min(timed, key=lambda x: (x[0], x[1]))
    # SMs that end last running one whole sequence each: split it with a fast SM, if that ends sooner
    n0 = len(cols["op"])
    for split in offload({**cols, "sm": _sm_of(cols["queues"], n0)}, end, s_q, cost) if sm_rates else ():
        tried = _timed(split, {**params, "split_pairs": (len(split["op"]) - n0) // 2}, _costs(split, cost), 0)
        if tried[0] < span:
            span, _, params, cols, start, end = tried
    op, seq_of, kv0, kv1, inputs, final, q0, qn, queues = (
        cols[k] for k in ("op", "seq", "kv0", "kv1", "inputs", "final", "q0", "qn", "queues"))
    sm_of = _sm_of(queues, len(op))
    return Schedule(
        workload=workload, num_sms=num_sms, queues=queues, scheduler="makespan",
        tasks=build_tasks(op, seq_of, kv0, kv1, inputs, final, sm_of, start, end, q0, qn),
        params=params, predicted_makespan_us=float(end.max()) / 1e3, compute_ms=(time.perf_counter() - t0) * 1e3,
    )
