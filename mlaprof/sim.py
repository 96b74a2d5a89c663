"""Run an instruction tensor on the cost model and record what the kernel would: a trace marked simulated.

It executes the tensor, not the Schedule: the same words the GPU reads, the same semaphores.  Per SM, as
the megakernel (csrc/interpreter.cuh) does it:

- controller (the consumer's leader thread): SETUP when the previous instruction is done, then for a
  reduction one WAIT per input, in order, until that input's STORE has ended plus the semaphore latency.
  A semaphore may have several readers (``Word.SIGNAL_COUNT``: per-query-token reductions sharing one
  partial); each may pass once the writer's store ended, and the count must equal the readers.
- producer (partials only; reductions read their inputs straight from L2): one LOAD per KV tile, one at a
  time (the SM's share of HBM bandwidth), each into one of ``stages`` shared-memory buffers (by default the
  kernel's ``format.KV_STAGES``); the load of tile i + stages waits for the compute of tile i.  It walks
  the list on its own, so the next partial's loads overlap this instruction's compute, store and waits;
  with one Q buffer they start once the previous partial has begun its last tile.
- consumer: one COMPUTE per KV tile (a reduction: one merge), then a STORE whose end releases the
  instruction's semaphore.  INSTRUCTION spans SETUP to STORE end.
- steal groups (``Word.STEAL_MEMBERS``): member m computes the group's tile m, then claims the next tile as it
  issues each one (its load may start ``steal_claim_ns`` after the claim), until the claims run past the
  range.  Claims are served in time order across SMs: an SM that reaches a member parks there, and the
  earliest pending claim is served only once no SM can run anything else, so no later SM can claim first.

Events go into per-SM buffers in the kernel's raw layout and through ``mlaprof.timing.decode_events``, so
a simulated trace is built exactly like a measured one.
"""

from __future__ import annotations

import datetime
import heapq
import itertools
import uuid

import numpy as np

import mlaprof
from mlaprof import format as fmt
from mlaprof.costmodel import CostModel, resolve
from mlaprof.errors import UserError
from mlaprof.provenance import git_revision
from mlaprof.schedule.encode import Encoded
from mlaprof.timing import decode_events
from mlaprof.trace.io import Trace
from mlaprof.trace.schema import TraceMeta

W = fmt.Word
K, R = fmt.Kind, fmt.Role
TILE = fmt.KV_TILE_TOKENS
VECTOR_TILES = 48  # partials with more tiles than this take the numpy path (faster past ~50 tiles)


class SimulationError(UserError):
    pass


def _hdr(kind, role, instr):
    return (instr << fmt.HEADER_INSTR_SHIFT) | (role << fmt.HEADER_ROLE_SHIFT) | kind


class _Noise:
    """Multiplicative jitter on span durations (1 + jitter * N(0, 1), floored at 0.05); 1 when jitter is 0."""

    def __init__(self, jitter: float, seed: int):
        self.jitter = jitter
        self.rng = np.random.default_rng(seed)
        self.buf, self.pos = np.empty(0), 0

    def take(self, n: int) -> np.ndarray | None:
        if not self.jitter:
            return None
        if self.pos + n > len(self.buf):
            self.buf = np.maximum(0.05, 1.0 + self.jitter * self.rng.standard_normal(max(4096, 2 * n)))
            self.pos = 0
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def one(self, x: float) -> float:
        f = self.take(1)
        return x if f is None else x * float(f[0])


def _tile_loop_py(loads, comps, prod, cons, ring, g, stages):
    """Scalar recurrence: load u starts when the producer (``prod``) and its stage buffer are free, compute u
    when the consumer (``cons``) is free and the tile has landed.  Returns the four time lists and the
    producer's and consumer's new free times."""
    ls, le, cs, ce = [], [], [], []
    for u in range(len(loads)):
        slot = (g + u) % stages
        s = max(prod, ring[slot])
        prod = s + loads[u]
        c = max(cons, prod)
        cons = c + comps[u]
        ring[slot] = cons
        ls.append(s)
        le.append(prod)
        cs.append(c)
        ce.append(cons)
    return ls, le, cs, ce, prod, cons


def _tile_loop_np(loads, comps, prod, cons, ring, g, stages):
    """The same recurrence in max-plus form: cumulative maxima, iterated to the fixed point of the stage
    constraint (load u waits for compute u - stages).  Converges in a few rounds; falls back when not.
    Returns numpy arrays (the scalar loop returns lists)."""
    n = len(loads)
    loads, comps = np.asarray(loads, float), np.asarray(comps, float)
    cl = np.cumsum(loads)
    cc = np.cumsum(comps)
    ready = np.full(n, -np.inf)
    ready[: min(n, stages)] = [ring[(g + u) % stages] for u in range(min(n, stages))]
    base = ready.copy()
    cl_ex, cc_ex = cl - loads, cc - comps
    for _ in range(64):
        le = np.maximum.accumulate(np.concatenate([[prod], ready - cl_ex]))[1:] + cl
        ce = np.maximum.accumulate(np.concatenate([[cons], le - cc_ex]))[1:] + cc
        # a fixed point once every load u >= stages starts after the compute that frees its buffer
        if (ce[:-stages] <= (le - loads)[stages:]).all():
            break
        ready = base.copy()
        ready[stages:] = np.maximum(base[stages:], ce[:-stages])
    else:
        return _tile_loop_py(list(loads), list(comps), prod, cons, ring, g, stages)
    ls = le - loads
    cs = ce - comps
    for u in range(max(0, n - stages), n):
        ring[(g + u) % stages] = float(ce[u])
    return ls, le, cs, ce, float(le[-1]), float(ce[-1])


def run(instructions: np.ndarray, cost: CostModel | None = None, stages: int = fmt.KV_STAGES, jitter: float = 0.0,
        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Execute the tensor; return raw events [num_sms, capacity, 4] (int64, ns) and per-SM counts.
    ``cost`` None: the calibrated H100 model (``costmodel.default()``)."""
    cost = resolve(cost)
    instr = np.asarray(instructions)
    if instr.ndim != 3 or instr.shape[2] != fmt.WORDS_PER_INSTRUCTION:
        raise SimulationError(f"instruction tensor must be [num_sms, max_instructions, {fmt.WORDS_PER_INSTRUCTION}], "
                              f"got {list(instr.shape)}")
    if stages < 1:
        raise SimulationError(f"need at least 1 pipeline stage, got {stages}")
    num_sms = instr.shape[0]
    noise = _Noise(jitter, seed)
    lat = cost.sem_latency_ns
    # decode each SM's list once into plain Python values (per-event work stays scalar and cheap)
    progs = []
    sem_owner: dict[int, tuple[int, int]] = {}
    sem_count: dict[int, int] = {}
    adders: dict[int, list[tuple[int, int]]] = {}  # counter semaphore -> the instructions that add to it
    counters: dict[int, tuple[int, int]] = {}  # counter semaphore -> (inputs its readers wait for, readers)
    groups: dict[int, tuple] = {}  # steal counter -> (members, kv start, kv end, member indices seen)
    for sm in range(num_sms):
        prog = []
        for p in range(instr.shape[1]):
            w = instr[sm, p].tolist()
            op = w[W.OPCODE]
            if op == fmt.Opcode.END:
                break
            if op not in (fmt.Opcode.PARTIAL, fmt.Opcode.REDUCTION):
                raise SimulationError(f"SM {sm} instruction {p}: unknown opcode {op}")
            k = w[W.NUM_INPUTS]
            counted = op == fmt.Opcode.REDUCTION and w[W.INPUT_LAYOUT] == fmt.InputLayout.COUNTED
            limit = fmt.MAX_COUNTED_INPUTS if counted else fmt.MAX_FANIN
            if not 0 <= k <= limit or (op == fmt.Opcode.REDUCTION and k == 0):
                raise SimulationError(f"SM {sm} instruction {p}: {k} inputs (allowed 1..{limit} for this reduction)")
            if w[W.KV_END] <= w[W.KV_START] or w[W.Q_COUNT] < 1:
                raise SimulationError(f"SM {sm} instruction {p}: empty KV or query range")
            # a counted reduction waits on one counter semaphore until its k inputs have added to it
            sems = w[W.INPUT_SEMS : W.INPUT_SEMS + (1 if counted else k)]
            if counted:
                said = counters.setdefault(sems[0], (k, w[W.COUNTER_READERS]))
                if said != (k, w[W.COUNTER_READERS]):
                    raise SimulationError(f"SM {sm} instruction {p}: counter semaphore {sems[0]} is read as "
                                          f"{k} inputs / {w[W.COUNTER_READERS]} readers here but {said[0]} / "
                                          f"{said[1]} elsewhere: every reader must say the same, or the last "
                                          "reader never resets it")
            steal = None
            if w[W.STEAL_MEMBERS]:
                n_tiles = -(-(w[W.KV_END] - w[W.KV_START]) // TILE)
                if op != fmt.Opcode.PARTIAL or not 0 <= w[W.STEAL_MEMBER] < w[W.STEAL_MEMBERS] <= n_tiles:
                    raise SimulationError(f"SM {sm} instruction {p}: steal group member {w[W.STEAL_MEMBER]} of "
                                          f"{w[W.STEAL_MEMBERS]} over {n_tiles} tiles (a partial's member index "
                                          "must be below the members, and the members at most the tiles)")
                steal = (w[W.STEAL_SEM], w[W.STEAL_MEMBER], w[W.STEAL_MEMBERS])
                said = groups.setdefault(steal[0], (w[W.STEAL_MEMBERS], w[W.KV_START], w[W.KV_END], []))
                if said[:3] != (w[W.STEAL_MEMBERS], w[W.KV_START], w[W.KV_END]):
                    raise SimulationError(f"SM {sm} instruction {p}: steal counter {steal[0]} is shared with "
                                          "members of another size or range")
                said[3].append(w[W.STEAL_MEMBER])
            prog.append((op, w[W.Q_COUNT] * fmt.NUM_HEADS_Q, w[W.KV_START], w[W.KV_END], w[W.SIGNAL_SEM],
                         w[W.OUT_SLOT] == fmt.NO_SLOT, sems, (k, w[W.COL_COUNT]) if counted else None, steal))
            sig = w[W.SIGNAL_SEM]
            if sig >= 0 and w[W.SIGNAL_COUNT] == fmt.SIGNAL_ADD:
                adders.setdefault(sig, []).append((sm, p))
            elif sig >= 0:
                if sig in sem_owner or sig in adders:
                    other = sem_owner.get(sig) or adders[sig][0]
                    raise SimulationError(f"semaphore {sig} is released by two instructions "
                                          f"(SM {other[0]} #{other[1]} and SM {sm} #{p})")
                sem_owner[sig] = (sm, p)
                sem_count[sig] = max(1, w[W.SIGNAL_COUNT])  # 0 means 1, as in the kernel
        progs.append(prog)
    for sem, (members, _, _, seen) in groups.items():
        if sorted(seen) != list(range(members)):
            raise SimulationError(f"steal counter {sem}: members {sorted(seen)} in the tensor, but it says "
                                  f"{members} members: each index 0..{members - 1} must appear once")
    # a semaphore counts its readers: each takes one back, so a reader beyond the count would wait forever
    # on the GPU (and one short of it leaves the semaphore nonzero for the next launch)
    takers: dict[int, int] = {}
    for sm, prog in enumerate(progs):
        for p, ins in enumerate(prog):
            for s in ins[6]:
                if ins[7] is not None:
                    if len(adders.get(s, ())) != ins[7][0]:
                        raise SimulationError(f"SM {sm} instruction {p} waits for {ins[7][0]} inputs on counter "
                                              f"semaphore {s}, but {len(adders.get(s, ()))} instruction(s) add to it")
                elif s not in sem_owner:
                    raise SimulationError(f"SM {sm} instruction {p} waits on semaphore {s}, which no instruction releases")
                takers[s] = takers.get(s, 0) + 1
    for s, (n_in, readers) in counters.items():
        if takers.get(s, 0) != readers:
            raise SimulationError(f"counter semaphore {s}: COUNTER_READERS says {readers} reader(s) but "
                                  f"{takers.get(s, 0)} instruction(s) wait on it: the last would never reset it")
    for s, n in takers.items():
        if s in counters:
            continue
        if n != sem_count[s]:
            osm, oj = sem_owner[s]
            raise SimulationError(f"semaphore {s} (SM {osm} instruction {oj}) signals {sem_count[s]} reader(s) "
                                  f"but {n} instruction(s) wait on it: SIGNAL_COUNT must equal the readers")

    sem_time: dict[int, float] = {}
    added: dict[int, list[float]] = {}  # counter semaphore -> release times so far
    waiters: dict[int, list[int]] = {}
    ev = [([], [], [], []) for _ in range(num_sms)]  # per SM: header, aux, start, end (scalar events)
    chunks: list[list[np.ndarray]] = [[] for _ in range(num_sms)]  # per SM: [4, n] arrays from the numpy path
    store_ns = {(r, f, red): float(cost.store_ns(r, f, red))
                for r in range(fmt.NUM_HEADS_Q, fmt.MAX_ROWS + 1, fmt.NUM_HEADS_Q) for f in (False, True)
                for red in (False, True)}
    setup_ns = {fmt.Opcode.PARTIAL: cost.setup_ns, fmt.Opcode.REDUCTION: cost.reduce_setup_ns}
    merge_ns = {(k, r): float(cost.reduce_ns(k, r)) for k in range(1, fmt.MAX_FANIN + 1)
                for r in range(fmt.NUM_HEADS_Q, fmt.MAX_ROWS + 1, fmt.NUM_HEADS_Q)}
    ptr = [0] * num_sms
    speed = cost.sm_factors(num_sms).tolist()  # SMs stream KV at different rates (CostModel.sm_spread)
    prod = [float(cost.first_load_ns)] * num_sms  # producer free: the first load waits for the prologue
    cons = [0.0] * num_sms  # consumer (and controller) free
    qfree = [0.0] * num_sms  # the Q buffer frees when the previous partial starts its last tile
    gtile = [0] * num_sms
    rings = [[0.0] * stages for _ in range(num_sms)]
    ready = list(range(num_sms - 1, -1, -1))
    tile_cache: dict[tuple[int, int], tuple[list, list]] = {}
    claimed = {sem: 0 for sem in groups}  # steal counter -> claims made so far
    claims: list[tuple[float, int, int]] = []  # pending claims: (time, sequence number, SM)
    order = itertools.count()  # ties between claims go to the one parked first
    member: dict[int, dict] = {}  # SM -> the steal group member it is inside

    def tiles_of(kv0, kv1, rows):
        key = (kv1 - kv0, rows)
        if key not in tile_cache:
            n = -(-(kv1 - kv0) // TILE)
            toks = np.full(n, TILE)
            toks[-1] = (kv1 - kv0) - TILE * (n - 1)
            tile_cache[key] = (cost.load_ns(toks).tolist(), cost.compute_ns(toks, rows).tolist())
        return tile_cache[key]

    def one_tile(sm, j, u, load, comp, p0, c0):
        """Tile u of the range through the SM's pipeline (the scalar recurrence, one step); returns its load start."""
        f = noise.take(2)
        if f is not None:
            load, comp = load * float(f[0]), comp * float(f[1])
        ls, le, cs, ce, prod[sm], cons[sm] = _tile_loop_py([load], [comp], p0, c0, rings[sm], gtile[sm], stages)
        gtile[sm] += 1
        H, A, S, E = ev[sm]
        H.extend((_hdr(K.LOAD, R.PRODUCER, j), _hdr(K.COMPUTE, R.CONSUMER, j))); A.extend((u, u))
        S.extend((ls[0], cs[0])); E.extend((le[0], ce[0]))
        qfree[sm] = cs[0]
        return ls[0]

    def finish(sm, j, begin, c_end, ins):
        """STORE and INSTRUCTION spans, then the release; the SM moves to its next instruction."""
        op, rows, _, _, sig, final = ins[:6]
        H, A, S, E = ev[sm]
        s_end = c_end + noise.one(store_ns[(rows, final, op == fmt.Opcode.REDUCTION)])
        H.append(_hdr(K.STORE, R.CONSUMER, j)); A.append(-1); S.append(c_end); E.append(s_end)
        H.append(_hdr(K.INSTRUCTION, R.CONTROLLER, j)); A.append(-1); S.append(begin); E.append(s_end)
        cons[sm] = s_end
        ptr[sm] += 1
        if sig in adders:
            added.setdefault(sig, []).append(s_end)
            if len(added[sig]) == len(adders[sig]):  # the last input: the counter is complete
                sem_time[sig] = max(added[sig])
                ready.extend(waiters.pop(sig, ()))
        elif sig >= 0:
            sem_time[sig] = s_end
            ready.extend(waiters.pop(sig, ()))

    while ready or claims:
        if not ready:  # every SM is parked at a claim, waiting or done: serve the earliest claim
            when, _, sm = heapq.heappop(claims)
            m = member[sm]
            sem, _, members = m["ins"][8]
            u = members + claimed[sem]
            claimed[sem] += 1
            if u < m["n"]:
                p0 = max(prod[sm], when + cost.steal_claim_ns)
                issued = one_tile(sm, m["j"], u, m["loads"][u] * m["f"], m["comps"][u], p0, cons[sm])
                heapq.heappush(claims, (issued, next(order), sm))
            else:  # the claims ran past the range: this member is done
                del member[sm]
                finish(sm, m["j"], m["begin"], cons[sm], m["ins"])
                ready.append(sm)
            continue
        sm = ready.pop()
        prog, (H, A, S, E) = progs[sm], ev[sm]
        while ptr[sm] < len(prog):
            j = ptr[sm]
            op, rows, kv0, kv1, sig, final, sems, counted, steal = prog[j]
            missing = next((s for s in sems if s not in sem_time), None)
            if missing is not None:
                waiters.setdefault(missing, []).append(sm)
                break
            begin = t = cons[sm]
            setup = noise.one(setup_ns[op])
            H.append(_hdr(K.SETUP, R.CONTROLLER, j)); A.append(-1); S.append(t); E.append(t + setup)
            t += setup
            for i, s in enumerate(sems):
                w_end = max(t, sem_time[s] + noise.one(lat))
                H.append(_hdr(K.WAIT, R.CONTROLLER, j)); A.append(i); S.append(t); E.append(w_end)
                t = w_end
            if steal is not None:  # its own tile now, then park at its first claim (served in time order)
                loads, comps = tiles_of(kv0, kv1, rows)
                n, u = len(loads), steal[1]
                f_sm = 1.0 + speed[sm] / (n / steal[2]) ** 0.5 if speed[sm] else 1.0
                issued = one_tile(sm, j, u, loads[u] * f_sm, comps[u], max(prod[sm], qfree[sm]), t)
                member[sm] = {"j": j, "begin": begin, "ins": prog[j], "n": n, "loads": loads, "comps": comps, "f": f_sm}
                heapq.heappush(claims, (issued, next(order), sm))
                break
            if op == fmt.Opcode.PARTIAL:
                loads, comps = tiles_of(kv0, kv1, rows)
                n = len(loads)
                if speed[sm]:
                    f_sm = 1.0 + speed[sm] / n ** 0.5
                    loads = [x * f_sm for x in loads]
                f = noise.take(2 * n)
                if f is not None:
                    loads = (np.asarray(loads) * f[:n]).tolist()
                    comps = (np.asarray(comps) * f[n:]).tolist()
                p0 = max(prod[sm], qfree[sm])
                hl, hc = _hdr(K.LOAD, R.PRODUCER, j), _hdr(K.COMPUTE, R.CONSUMER, j)
                if n > VECTOR_TILES:
                    ls, le, cs, ce, prod[sm], c_end = _tile_loop_np(loads, comps, p0, t, rings[sm], gtile[sm], stages)
                    aux = np.arange(n)
                    chunks[sm].append(np.stack([np.repeat([hl, hc], n), np.concatenate([aux, aux]),
                                                np.concatenate([ls, cs]), np.concatenate([le, ce])]))
                else:
                    ls, le, cs, ce, prod[sm], c_end = _tile_loop_py(loads, comps, p0, t, rings[sm], gtile[sm], stages)
                    H.extend([hl] * n); A.extend(range(n)); S.extend(ls); E.extend(le)
                    H.extend([hc] * n); A.extend(range(n)); S.extend(cs); E.extend(ce)
                qfree[sm] = float(cs[-1])
                gtile[sm] += n
            elif counted is not None:
                c_end = t + noise.one(float(cost.counted_ns(counted[0], rows, counted[1])))
                H.append(_hdr(K.COMPUTE, R.CONSUMER, j)); A.append(-1); S.append(t); E.append(c_end)
            else:
                c_end = t + noise.one(merge_ns[(len(sems), rows)])
                H.append(_hdr(K.COMPUTE, R.CONSUMER, j)); A.append(-1); S.append(t); E.append(c_end)
            finish(sm, j, begin, c_end, prog[j])

    stuck = [sm for sm in range(num_sms) if ptr[sm] < len(progs[sm])]
    if stuck:
        parts = []
        for sm in stuck[:6]:
            j = ptr[sm]
            sem = next(s for s in progs[sm][j][6] if s not in sem_time)
            if sem in adders:
                parts.append(f"SM {sm} instruction {j} waits on counter semaphore {sem} "
                             f"({len(added.get(sem, ()))} of {len(adders[sem])} inputs done)")
                continue
            osm, oj = sem_owner[sem]
            parts.append(f"SM {sm} instruction {j} waits on semaphore {sem} (released by SM {osm} instruction {oj})")
        more = f" and {len(stuck) - 6} more" if len(stuck) > 6 else ""
        raise SimulationError(f"deadlock: {len(stuck)} SMs can never proceed: {'; '.join(parts)}{more}")

    counts = np.asarray([len(e[0]) + sum(c.shape[1] for c in chunks[sm]) for sm, e in enumerate(ev)], dtype=np.int64)
    events = np.zeros((num_sms, max(1, int(counts.max(initial=0))), fmt.EVENT_WORDS), dtype=np.int64)
    for sm, (H, A, S, E) in enumerate(ev):
        n = len(H)
        if n:
            events[sm, :n, 0] = H
            events[sm, :n, 1] = A
            events[sm, :n, 2] = np.rint(S)
            events[sm, :n, 3] = np.rint(E)
        for c in chunks[sm]:
            events[sm, n : n + c.shape[1]] = np.rint(c.T)
            n += c.shape[1]
    return events, counts


def simulate(encoded: Encoded, cost: CostModel | None = None, stages: int = fmt.KV_STAGES, jitter: float = 0.0, seed: int = 0) -> Trace:
    """The trace the kernel would record for this instruction tensor, on this cost model (None: the
    calibrated H100 model)."""
    cost = resolve(cost)
    events, counts = run(encoded.instructions, cost, stages=stages, jitter=jitter, seed=seed)
    table, _ = decode_events(events, counts, encoded.instructions)
    s = encoded.schedule
    meta = TraceMeta(
        source="simulated",
        workload=s.workload.to_json() if s else {},
        scheduler=s.scheduler if s else "unknown",
        sm_count=encoded.num_sms,
        scheduler_params={**(s.params if s else {}), "predicted_makespan_us": round(s.predicted_makespan_us, 3) if s else None,
                          "compute_ms": round(s.compute_ms, 3) if s else None},
        tasks=s.to_json() if s else [],
        mlaprof_version=mlaprof.__version__,
        git_rev=git_revision(),
        timer_source="cost-model",
        timer_resolution_ns=1.0,
        run_id=uuid.uuid4().hex[:12],
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        event_capacity=int(events.shape[1]),
        extra={"sim": {"stages": stages, "jitter": jitter, "seed": seed, "cost_model": cost.to_json(),
                       "num_slots": encoded.num_slots, "num_sems": encoded.num_sems}},
    )
    return Trace(table=table, meta=meta)
