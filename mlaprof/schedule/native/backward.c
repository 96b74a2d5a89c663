/* makespan._plan and makespan._materialise (see backward.h and makespan.py's module docstring). */
#include <math.h>
#include <stdint.h>

#include "backward.h"
#include "cost.h"

/* makespan.MIN_TILE_NS: the planner divides time by a tile's cost, so a model whose tiles cost nothing packs
   them at 1 ps each */
static const double MIN_TILE_NS = 1e-3;

void costs_init(const Model *m, i64 rows, Costs *c) {
    double a_f, unused, tau;
    c->rows = rows;
    partial_linear(m, rows, 0, &c->a_p, &tau);
    c->tau = tau > MIN_TILE_NS ? tau : MIN_TILE_NS;
    partial_linear(m, rows, 1, &a_f, &unused);
    c->a_f = a_f;
    c->lag = m->sem_latency_ns - m->reduce_setup_ns; /* input end -> reduction start (setup overlaps the wait) */
}

/* The tail's ready items, ordered as Python orders its tuples (r_time, i, idx, is_red, q): by time, then
   by ``id``, which packs (sequence, index, is it a merge, query token) so that comparing it compares them
   in that order (fields checked to fit before the tail starts). */
enum { Q_BITS = 8, IDX_BITS = 28, SEQ_BITS = 63 - Q_BITS - 1 - IDX_BITS };
typedef struct {
    double t;
    uint64_t id;
} Ready;

static inline Ready ready_item(double t, i64 i, i64 idx, int is_red, i64 q) {
    return (Ready){t, (uint64_t)i << (IDX_BITS + 1 + Q_BITS) | (uint64_t)idx << (1 + Q_BITS)
                          | (uint64_t)is_red << Q_BITS | (uint64_t)q};
}

typedef struct {
    double t;
    i64 i, idx, is_red, q;
} ReadyFields;

static inline ReadyFields ready_fields(Ready r) {
    const uint64_t idx_mask = ((uint64_t)1 << IDX_BITS) - 1, q_mask = ((uint64_t)1 << Q_BITS) - 1;
    return (ReadyFields){r.t, (i64)(r.id >> (IDX_BITS + 1 + Q_BITS)), (i64)(r.id >> (1 + Q_BITS) & idx_mask),
                         (i64)(r.id >> Q_BITS & 1), (i64)(r.id & q_mask)};
}

static inline int ready_less(const Ready *a, const Ready *b) {
    return a->t < b->t || (a->t == b->t && a->id < b->id);
}
HEAP_FUNCTIONS(ready_heap, Ready, ready_less)

/* makespan._solve_fill: smallest T at which sum_l floor((T - start_l - a_p) / tau)^+ >= tiles */
static double solve_fill(Arena *a, const double *starts, i64 n, i64 tiles, const Costs *c) {
    double aa = c->a_p, tau = c->tau;
    double *order = ALLOC(a, double, n), *cum = ALLOC(a, double, n + 1), *frac = ALLOC(a, double, n);
    if (a->failed) return NAN;
    for (i64 j = 0; j < n; j++) order[j] = starts[j];
    sort_f64(a, order, n, 0);
    cum[0] = 0.0;
    for (i64 j = 0; j < n; j++) cum[j + 1] = cum[j] + order[j];
    /* continuous solution over the leaves that get anything, then round up to whole tiles */
    double t = 0.0;
    for (i64 l = n; l > 0; l--) {
        t = ((double)tiles * tau + cum[l] + (double)l * aa) / (double)l;
        if (t - order[l - 1] - aa >= 0) break;
    }
    for (i64 it = 0; it < 4 * n + 8; it++) {
        i64 got = 0, nf = 0;
        for (i64 j = 0; j < n; j++) {
            double x = (t - starts[j] - aa) / tau;
            if (x > 0) got += (i64)x;
            if (x > -1) frac[nf++] = x - floor(x);
        }
        i64 deficit = tiles - got;
        if (deficit <= 0) return t;
        /* the deficit-th largest fraction (Python sorts them all) */
        t += deficit <= nf ? (1.0 - kth_largest(frac, nf, deficit)) * tau + 1e-6 : tau;
    }
    return t;
}

/* makespan._trim: cut the largest entries down to a common level until they sum to total */
static void trim(i64 *v, i64 n, i64 total) {
    i64 sum = 0, hi = 0;
    for (i64 j = 0; j < n; j++) sum += v[j], hi = v[j] > hi ? v[j] : hi;
    if (sum <= total) return;
    i64 lo = 0; /* smallest cap with sum(min(v, cap)) >= total */
    while (lo < hi) {
        i64 mid = (lo + hi) / 2, s = 0;
        for (i64 j = 0; j < n; j++) s += v[j] < mid ? v[j] : mid;
        if (s >= total) hi = mid;
        else lo = mid + 1;
    }
    i64 excess = -total;
    for (i64 j = 0; j < n; j++) v[j] = v[j] < lo ? v[j] : lo, excess += v[j];
    for (i64 j = n - 1; j >= 0 && excess != 0; j--) /* from the deepest (last) leaves first */
        if (v[j] == lo) v[j]--, excess--;
}

int backward_plan(Arena *a, const Model *m, const Costs *c, const i64 *tiles, i64 b, i64 num_sms,
                  const i64 *m_fill, i64 chunk, i64 k, i64 copies, Plan *p) {
    i64 rrows = c->rows / copies;
    p->b = b, p->chunk = chunk, p->k = k, p->copies = copies, p->num_fillers = 0;
    p->leaf_off = ALLOC(a, i64, b + 1);
    p->is_filler = ALLOC(a, i64, b);
    p->tree = ALLOC_ZERO(a, Tree *, b);
    p->red_off = ALLOC(a, i64, b + 1);
    p->whole_sm = ALLOC(a, i64, b);
    p->whole_re = ALLOC(a, double, b);
    if (a->failed) return E_NOMEM;
    /* ---- shape: fillers get m_fill partials (sized later), the others equal chunks of ``chunk`` tiles */
    i64 L = 0;
    for (i64 i = 0; i < b; i++) {
        p->leaf_off[i] = L;
        p->is_filler[i] = m_fill[i] >= 2;
        p->num_fillers += p->is_filler[i];
        if (p->is_filler[i]) L += m_fill[i];
        else {
            i64 parts = (tiles[i] + chunk - 1) / chunk;
            L += parts > 1 ? parts : 1;
        }
    }
    p->leaf_off[b] = L;
    p->leaf_n = ALLOC(a, i64, L);
    p->leaf_placed = ALLOC_ZERO(a, i64, L);
    p->leaf_sm = ALLOC(a, i64, L);
    p->leaf_re = ALLOC(a, double, L);
    p->leaf_start = ALLOC(a, double, L);
    double *rho = ALLOC_ZERO(a, double, L);
    i64 *pend = ALLOC(a, i64, L), *first_read = ALLOC(a, i64, L), *seq_of_leaf = ALLOC(a, i64, L);
    if (a->failed) return E_NOMEM;
    i64 num_reds = 0;
    for (i64 i = 0; i < b; i++) {
        i64 lo = p->leaf_off[i], n = p->leaf_off[i + 1] - lo;
        for (i64 j = 0; j < n; j++) {
            seq_of_leaf[lo + j] = i;
            pend[lo + j] = copies;
            if (p->is_filler[i]) p->leaf_n[lo + j] = -1;
            else p->leaf_n[lo + j] = tiles[i] / n + (j < tiles[i] % n ? 1 : 0);
        }
        p->red_off[i] = num_reds;
        if (n == 1) continue;
        for (i64 j = 0; j < i && p->tree[i] == NULL; j++) /* a tree per leaf count */
            if (p->tree[j] != NULL && p->leaf_off[j + 1] - p->leaf_off[j] == n) p->tree[i] = p->tree[j];
        if (p->tree[i] == NULL) {
            p->tree[i] = ALLOC(a, Tree, 1);
            if (p->tree[i] == NULL || backward_tree(a, n, k, p->tree[i]) != E_OK) return E_NOMEM;
        }
        num_reds += copies * p->tree[i]->count;
    }
    p->red_off[b] = num_reds;
    p->red_sm = ALLOC(a, i64, num_reds);
    p->red_re = ALLOC(a, double, num_reds);
    Ready *ready = ALLOC(a, Ready, num_reds + L);
    SmFree *sms = ALLOC(a, SmFree, num_sms);
    if (a->failed) return E_NOMEM;
    size_t num_ready = 0, num_free = (size_t)num_sms;
    if (b >= (i64)1 << SEQ_BITS || L >= (i64)1 << IDX_BITS || num_reds >= (i64)1 << IDX_BITS
        || copies >= (i64)1 << Q_BITS)
        return E_INTERNAL; /* too large to pack: left to Python */

    /* ---- tail: reversed list scheduling of reductions and fixed partials ------------------------------ */
    for (i64 s = 0; s < num_sms; s++) sms[s] = (SmFree){0.0, s};
    for (i64 i = 0; i < b; i++)
        if (p->tree[i] != NULL)
            for (i64 q = 0; q < copies; q++) ready[num_ready++] = ready_item(0.0, i, p->tree[i]->count - 1, 1, q);
    ready_heap_heapify(ready, num_ready);
    i64 num_first = 0;
    while (num_ready > 0) {
        ReadyFields r = ready_fields(ready_heap_pop(ready, &num_ready));
        SmFree f = sms[0]; /* popped, and pushed back below with its new end */
        double start = f.t > r.t ? f.t : r.t, end;
        i64 lo = p->leaf_off[r.i];
        if (r.is_red) {
            const Tree *t = p->tree[r.i];
            end = start + reduction_ns(m, t->in_len[r.idx], rrows, (int)t->root[r.idx]);
            i64 at = p->red_off[r.i] + r.q * t->count + r.idx;
            p->red_sm[at] = f.sm, p->red_re[at] = end;
            double dl = end + c->lag;
            const i64 *ins = t->ins + t->in_off[r.idx];
            for (i64 x = 0; x < t->in_len[r.idx]; x++)
                if (ins[x] < 0) ready_heap_push(ready, &num_ready, ready_item(dl, r.i, ~ins[x], 1, r.q));
            for (i64 x = 0; x < t->in_len[r.idx]; x++) {
                if (ins[x] < 0) continue;
                i64 leaf = lo + ins[x];
                i64 left = --pend[leaf];
                /* its first reader sets its first deadline (even one <= 0: free merges with a negative lag) */
                if (left == copies - 1) first_read[num_first++] = leaf;
                if (dl > rho[leaf]) rho[leaf] = dl;
                if (left == 0 && !p->is_filler[r.i])
                    ready_heap_push(ready, &num_ready, ready_item(rho[leaf], r.i, ins[x], 0, 0));
            }
        } else {
            i64 leaf = lo + r.idx;
            end = start + c->a_p + (double)p->leaf_n[leaf] * c->tau;
            p->leaf_placed[leaf] = 1, p->leaf_sm[leaf] = f.sm, p->leaf_re[leaf] = end;
        }
        sm_heap_replace(sms, num_free, (SmFree){end, f.sm});
    }
    double *tail = ALLOC(a, double, num_sms), *used = ALLOC(a, double, num_sms);
    if (a->failed) return E_NOMEM;
    for (size_t j = 0; j < num_free; j++) tail[sms[j].sm] = sms[j].t;
    double T = tail[0];
    for (i64 s = 0; s < num_sms; s++) T = tail[s] > T ? tail[s] : T, used[s] = tail[s];

    /* ---- fill: filler leaves onto the least busy SMs, deepest deadline with the busiest of those ------ */
    i64 *keys = ALLOC(a, i64, L), *key_order = ALLOC(a, i64, L), *by_tail = ALLOC(a, i64, num_sms);
    double *key_rho = ALLOC(a, double, L);
    i64 *has_start = ALLOC_ZERO(a, i64, L);
    if (a->failed) return E_NOMEM;
    i64 num_keys = 0;
    for (i64 j = 0; j < num_first; j++)
        if (p->is_filler[seq_of_leaf[first_read[j]]])
            keys[num_keys] = first_read[j], key_rho[num_keys++] = rho[first_read[j]];
    if (num_keys > 0) {
        if (num_keys > num_sms) return E_SKIP; /* more filler leaves than SMs: this shape cannot be placed */
        argsort_f64(a, key_order, key_rho, num_keys, 1);
        argsort_f64(a, by_tail, tail, num_sms, 0);
        for (i64 j = 0; j < num_keys; j++) {
            i64 leaf = keys[key_order[j]], s = by_tail[num_keys - 1 - j];
            p->leaf_sm[leaf] = s;
            p->leaf_start[leaf] = rho[leaf] > tail[s] ? rho[leaf] : tail[s];
            has_start[leaf] = 1;
        }
        for (i64 i = 0; i < b; i++) {
            if (!p->is_filler[i]) continue;
            i64 lo = p->leaf_off[i], n = p->leaf_off[i + 1] - lo;
            for (i64 j = 0; j < n; j++)
                if (!has_start[lo + j]) return E_INTERNAL; /* a leaf nobody reads: Python raises */
            double t = solve_fill(a, p->leaf_start + lo, n, tiles[i], c);
            if (a->failed) return E_NOMEM;
            if (t > T) T = t;
        }
        for (i64 i = 0; i < b; i++) {
            if (!p->is_filler[i]) continue;
            i64 lo = p->leaf_off[i], n = p->leaf_off[i + 1] - lo;
            for (i64 j = 0; j < n; j++) {
                i64 x = (i64)((T - p->leaf_start[lo + j] - c->a_p) / c->tau);
                p->leaf_n[lo + j] = x > 0 ? x : 0;
            }
            trim(p->leaf_n + lo, n, tiles[i]);
            for (i64 j = 0; j < n; j++) {
                if (p->leaf_n[lo + j] <= 0) continue;
                i64 s = p->leaf_sm[lo + j];
                double e = p->leaf_start[lo + j] + c->a_p + (double)p->leaf_n[lo + j] * c->tau;
                if (e > used[s]) used[s] = e;
            }
        }
    } else if (p->num_fillers > 0) {
        return E_SKIP; /* fillers whose leaves nobody reads stay unsized: this shape cannot be placed */
    }

    /* ---- whole sequences, longest first, into the most time left before T (LPT) --------------------- */
    for (i64 s = 0; s < num_sms; s++) sms[s] = (SmFree){used[s], s};
    num_free = (size_t)num_sms;
    sm_heap_heapify(sms, num_free);
    i64 *whole = ALLOC(a, i64, b), *by_tiles = ALLOC(a, i64, b), num_whole = 0;
    i64 *whole_tiles = ALLOC(a, i64, b);
    if (a->failed) return E_NOMEM;
    for (i64 i = 0; i < b; i++)
        if (p->leaf_off[i + 1] - p->leaf_off[i] == 1) whole_tiles[num_whole] = tiles[i], whole[num_whole++] = i;
    argsort_i64(a, by_tiles, whole_tiles, num_whole, 1);
    for (i64 j = 0; j < num_whole; j++) {
        i64 i = whole[by_tiles[j]];
        SmFree f = sms[0];
        double end = f.t + c->a_f + (double)tiles[i] * c->tau; /* reversed: it runs before all else there */
        p->whole_sm[i] = f.sm, p->whole_re[i] = end;
        sm_heap_replace(sms, num_free, (SmFree){end, f.sm});
        if (end > T) T = end;
    }
    p->T = T;
    return E_OK;
}

#define NONE INT64_MIN /* a tree input with no task (a leaf of no tiles, or a merge of nothing) */

int materialise(Arena *a, const Model *m, const Costs *c, const Plan *p, const i64 *lens, i64 s_q,
                i64 num_sms, const double *spread, Cols *out) {
    const i64 TILE = m->tile_tokens;
    double T = p->T;
    i64 b = p->b, copies = p->copies;
    i64 max_tasks = p->leaf_off[b] + p->red_off[b], max_inputs = 0;
    for (i64 i = 0; i < b; i++)
        if (p->tree[i] != NULL) max_inputs += copies * tree_inputs(p->tree[i]);
    if (cols_alloc(a, out, max_tasks, max_inputs, num_sms) != E_OK) return E_NOMEM;
    double *fstart = ALLOC(a, double, max_tasks);
    i64 *leaf_task = ALLOC(a, i64, p->leaf_off[b]);
    if (a->failed) return E_NOMEM;
    i64 n = 0, in_pos = 0;
#define ADD(o, s, lo, hi, f, sm_, st, qa, qb)                                                              \
    (out->op[n] = (o), out->seq[n] = (s), out->kv0[n] = (lo), out->kv1[n] = (hi), out->final[n] = (f),      \
     out->sm[n] = (sm_), fstart[n] = (st), out->q0[n] = (qa), out->qn[n] = (qb), out->fan[n] = 0,             \
     out->in_off[n] = in_pos, n++)
    for (i64 i = 0; i < b; i++) {
        i64 length = lens[i], lo = p->leaf_off[i], nl = p->leaf_off[i + 1] - lo;
        const Tree *t = p->tree[i];
        if (t == NULL) {
            ADD(OP_PARTIAL, i, 0, length, 1, p->whole_sm[i], T - p->whole_re[i], 0, s_q);
            continue;
        }
        i64 pos = 0;
        for (i64 j = 0; j < nl; j++) {
            i64 x = p->leaf_n[lo + j];
            if (x <= 0) {
                leaf_task[lo + j] = -1;
                continue;
            }
            i64 kv_a = pos * TILE, kv_b = (pos + x) * TILE < length ? (pos + x) * TILE : length;
            pos += x;
            double start = p->leaf_placed[lo + j] ? T - p->leaf_re[lo + j]
                                                  : T - p->leaf_start[lo + j] - (c->a_p + (double)x * c->tau);
            leaf_task[lo + j] = n;
            ADD(OP_PARTIAL, i, kv_a, kv_b, 0, p->leaf_sm[lo + j], start, 0, s_q);
        }
        if (pos * TILE < length) return E_INTERNAL; /* fill sizes add up; Python raises */
        /* the tree's merges resolved once (inputs of no tiles dropped, merges of one input passed up), then
           added per query token: ref >= 0 a leaf task, ~r the r-th kept merge */
        i64 *ref = ALLOC(a, i64, t->count), *kept = ALLOC(a, i64, t->count), *refs = ALLOC(a, i64, tree_inputs(t));
        i64 *refs_off = ALLOC(a, i64, t->count), *refs_len = ALLOC(a, i64, t->count);
        i64 *kept_lo = ALLOC(a, i64, t->count), *kept_hi = ALLOC(a, i64, t->count);
        if (a->failed) return E_NOMEM;
        i64 num_kept = 0, rpos = 0;
        for (i64 r = 0; r < t->count; r++) {
            i64 nr = 0, off = rpos;
            for (i64 x = t->in_off[r]; x < t->in_off[r] + t->in_len[r]; x++) {
                i64 in = t->ins[x];
                i64 v = in < 0 ? ref[~in] : (leaf_task[lo + in] >= 0 ? leaf_task[lo + in] : NONE);
                if (v != NONE) refs[rpos + nr++] = v;
            }
            if (nr <= 1) {
                ref[r] = nr ? refs[off] : NONE;
                continue;
            }
            i64 klo = 0, khi = 0;
            for (i64 x = 0; x < nr; x++) {
                i64 v = refs[off + x];
                i64 vlo = v >= 0 ? out->kv0[v] : kept_lo[~v], vhi = v >= 0 ? out->kv1[v] : kept_hi[~v];
                if (x == 0 || vlo < klo) klo = vlo;
                if (x == 0 || vhi > khi) khi = vhi;
            }
            kept[num_kept] = r, refs_off[num_kept] = off, refs_len[num_kept] = nr;
            kept_lo[num_kept] = klo, kept_hi[num_kept] = khi;
            ref[r] = ~num_kept++;
            rpos += nr;
        }
        i64 root = ref[t->count - 1];
        if (root == NONE) return E_INTERNAL;
        for (i64 q = 0; q < copies; q++) {
            i64 base = n;
            for (i64 j = 0; j < num_kept; j++) {
                i64 at = p->red_off[i] + q * t->count + kept[j];
                ADD(OP_REDUCTION, i, kept_lo[j], kept_hi[j], 0, p->red_sm[at], T - p->red_re[at],
                    copies > 1 ? q : 0, copies > 1 ? 1 : s_q);
                out->fan[n - 1] = refs_len[j];
                for (i64 x = 0; x < refs_len[j]; x++) {
                    i64 v = refs[refs_off[j] + x];
                    out->in_idx[in_pos++] = v >= 0 ? v : base + ~v;
                }
            }
            out->final[root >= 0 ? root : base + ~root] = 1;
        }
    }
#undef ADD
    out->n = n;
    /* queues in planned start order (stable: ties keep task order) */
    i64 *order = ALLOC(a, i64, n), *q_pos = ALLOC(a, i64, num_sms);
    if (a->failed) return E_NOMEM;
    argsort_f64(a, order, fstart, n, 0);
    for (i64 s = 0; s < num_sms; s++) out->q_len[s] = 0;
    for (i64 j = 0; j < n; j++) out->q_len[out->sm[j]]++;
    for (i64 s = 0, pos = 0; s < num_sms; s++) q_pos[s] = pos, pos += out->q_len[s];
    for (i64 j = 0; j < n; j++) out->q_idx[q_pos[out->sm[order[j]]]++] = order[j];
    return timeline(a, m, spread, out);
}
