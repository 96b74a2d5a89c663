/* makespan.makespan_schedule without per-SM placement: the rollout shapes (candidates, _distinct), their
   closed-form bounds (_work_bound, _depth_bound), planning the promising ones, timing the best and the
   static schedule, and keeping the faster. */
#include <math.h>

#include "backward.h"
#include "cost.h"
#include "rollouts.h"

enum { SHAPE_FILL_ALL = 0, SHAPE_FILL_LONGEST = 1, SHAPE_CHUNKS = 2 }; /* native/__init__.py names them */

typedef struct {
    i64 shape, chunk, k, copies;
    i64 *m_fill; /* per sequence: its number of partials if it fills (>= 2), else 0 */
} Candidate;

static Candidate *candidate(Candidate *cd, i64 shape, i64 chunk, i64 k, i64 copies) {
    cd->shape = shape, cd->chunk = chunk, cd->k = k, cd->copies = copies;
    return cd;
}

/* makespan.tree_depth_ns for one leaf count */
static double tree_depth_ns(const Model *m, const Costs *c, i64 n, i64 k, i64 rows) {
    double out = 0.0;
    while (n > 1) {
        i64 groups = (n + k - 1) / k, fan = (n + groups - 1) / groups;
        out += reduction_ns(m, fan, rows, groups == 1) + c->lag;
        n = groups;
    }
    return out;
}

/* makespan.balanced_fillers' needs(): per sequence the fewest SMs whose time is within target (0: none) */
static void needs(const double *t_seq, i64 b, i64 S, double target, i64 *need) {
    for (i64 i = 0; i < b; i++) {
        need[i] = 0;
        for (i64 j = 0; j < S; j++)
            if (t_seq[i * S + j] <= target) {
                need[i] = j + 1;
                break;
            }
    }
}

/* makespan.balanced_fillers */
static int balanced_fillers(Arena *a, const Model *m, const Costs *c, const i64 *tiles, i64 b, i64 S, i64 k,
                            i64 rows, i64 *m_fill) {
    double *depth = ALLOC(a, double, S), *t_seq = ALLOC(a, double, b * S);
    double *whole_ns = ALLOC(a, double, b), *w = ALLOC(a, double, b);
    i64 *need = ALLOC(a, i64, b);
    if (a->failed) return E_NOMEM;
    for (i64 j = 0; j < S; j++) depth[j] = tree_depth_ns(m, c, j + 1 > 2 ? j + 1 : 2, k, rows);
    i64 total = 0;
    double whole_max = 0.0;
    for (i64 i = 0; i < b; i++) {
        total += tiles[i];
        for (i64 j = 1; j < S; j++) t_seq[i * S + j] = (double)tiles[i] * c->tau / (double)(j + 1) + depth[j] + c->a_p;
        t_seq[i * S] = whole_ns[i] = c->a_f + (double)tiles[i] * c->tau;
        if (i == 0 || whole_ns[i] > whole_max) whole_max = whole_ns[i];
    }
    double lo = (double)total * c->tau / (double)S;
    double hi = whole_max + numpy_sum(whole_ns, b) / (double)S;
    for (int it = 0; it < 40; it++) {
        if (hi - lo <= 0.05 * c->tau) break;
        double mid = 0.5 * (lo + hi);
        /* fits(mid): every sequence ends by mid on its SMs, and they and the whole ones' bins fit the SMs */
        needs(t_seq, b, S, mid, need);
        int fits = 1;
        i64 split_sms = 0, nw = 0, over_half = 0;
        for (i64 i = 0; i < b && fits; i++) {
            if (need[i] == 0) fits = 0;
            else if (need[i] > 1) split_sms += need[i];
            else w[nw++] = whole_ns[i];
        }
        if (fits) {
            for (i64 j = 0; j < nw; j++) over_half += w[j] > 0.5 * mid;
            i64 bins = (i64)ceil(numpy_sum(w, nw) / mid);
            if (over_half > bins) bins = over_half;
            fits = split_sms + bins <= S;
        }
        if (fits) hi = mid;
        else lo = mid;
    }
    needs(t_seq, b, S, hi, need);
    for (i64 i = 0; i < b; i++) m_fill[i] = need[i] > 1 ? need[i] : 0;
    return E_OK;
}

/* makespan._depth_bound */
static double depth_bound(const Costs *c, const i64 *tiles, const i64 *mm, const i64 *is_fill, i64 b, i64 k,
                          double red2_final, double red2_scratch) {
    double best = 0.0;
    int any = 0;
    for (i64 i = 0; i < b; i++) {
        if (mm[i] <= 1) continue;
        double ms = (double)mm[i], ts = (double)tiles[i];
        double depth = ceil(log(ms) / log((double)k) - 1e-9);
        double levels = depth - 1.0 > 1.0 ? depth - 1.0 : 1.0;
        double path = (c->lag + red2_final) + (levels - 1.0) * (c->lag + red2_scratch);
        double leaf = (is_fill[i] ? ts / ms : ceil(ts / ms)) * c->tau;
        double v = c->a_p + leaf + path;
        if (!any || v > best) best = v, any = 1;
    }
    return best;
}

/* makespan._work_bound: a lower bound on the T backward_plan returns for this shape */
static double work_bound(Arena *a, const Model *m, const Costs *c, const i64 *tiles, i64 b, i64 S,
                         const Candidate *cd) {
    i64 rrows = c->rows / cd->copies;
    i64 *mm = ALLOC(a, i64, b), *is_fill = ALLOC_ZERO(a, i64, b);
    i64 *sizes = ALLOC(a, i64, b), *by_size = ALLOC(a, i64, b);
    if (a->failed) return NAN;
    i64 tile_sum = 0, num_whole = 0, partial_count = 0, num_sizes = 0, longest_whole = -1;
    for (i64 i = 0; i < b; i++) {
        i64 parts = (tiles[i] + cd->chunk - 1) / cd->chunk;
        mm[i] = parts > 1 ? parts : 1;
        if (cd->m_fill[i] >= 2) mm[i] = cd->m_fill[i], is_fill[i] = 1;
        tile_sum += tiles[i];
        if (mm[i] == 1) {
            num_whole++;
            if (tiles[i] > longest_whole) longest_whole = tiles[i];
        } else {
            partial_count += is_fill[i] ? 1 : mm[i]; /* a filler counts one fixed cost */
            sizes[num_sizes++] = mm[i];
        }
    }
    double work = (double)tile_sum * c->tau + (double)num_whole * c->a_f + (double)partial_count * c->a_p;
    argsort_i64(a, by_size, sizes, num_sizes, 0);
    for (i64 j = 0; j < num_sizes;) { /* every distinct leaf count once, ascending, times its sequences */
        i64 size = sizes[by_size[j]], count = 0;
        while (j < num_sizes && sizes[by_size[j]] == size) count++, j++;
        Tree t;
        if (backward_tree(a, size, cd->k, &t) != E_OK) return NAN;
        double reds = 0.0;
        for (i64 r = 0; r < t.count; r++) reds += reduction_ns(m, t.in_len[r], rrows, (int)t.root[r]);
        work += (double)(cd->copies * count) * reds;
    }
    double bound = work / (double)S;
    double whole = longest_whole >= 0 ? (double)longest_whole * c->tau + c->a_f : 0.0;
    double depth = depth_bound(c, tiles, mm, is_fill, b, cd->k, reduction_ns(m, 2, rrows, 1),
                               reduction_ns(m, 2, rrows, 0));
    if (whole > bound) bound = whole;
    if (depth > bound) bound = depth;
    return bound;
}

/* makespan._distinct: does candidate y plan exactly like x? (same fillers, same chunk counts elsewhere) */
static int same_plan(const Candidate *x, const Candidate *y, const i64 *tiles, i64 b) {
    if (x->k != y->k || x->copies != y->copies) return 0;
    for (i64 i = 0; i < b; i++) {
        i64 fx = x->m_fill[i] >= 2 ? x->m_fill[i] : 0, fy = y->m_fill[i] >= 2 ? y->m_fill[i] : 0;
        if (fx != fy) return 0;
        if (fx) continue;
        i64 px = (tiles[i] + x->chunk - 1) / x->chunk, py = (tiles[i] + y->chunk - 1) / y->chunk;
        if ((px > 1 ? px : 1) != (py > 1 ? py : 1)) return 0;
    }
    return 1;
}

int makespan(Arena *a, const Model *m, const i64 *lens, i64 b, i64 s_q, i64 S, int per_token, i64 timed_max,
             const double *spread, Cols *out, MakespanInfo *info) {
    const i64 TILE = m->tile_tokens, k = m->max_fanin;
    Costs c;
    costs_init(m, s_q * m->heads_q, &c);
    i64 *tiles = ALLOC(a, i64, b);
    Candidate *cands = ALLOC(a, Candidate, 4);
    if (a->failed) return E_NOMEM;
    i64 tile_sum = 0, longest = 0;
    for (i64 i = 0; i < b; i++) {
        tiles[i] = (lens[i] + TILE - 1) / TILE;
        tile_sum += tiles[i];
        if (tiles[i] > tiles[longest]) longest = i;
    }
    int choice = per_token < 0 ? prefer_per_token(m, s_q, k) : per_token;
    i64 copies = choice && s_q > 1 ? s_q : 1;

    /* ---- makespan.candidates --------------------------------------------------------------------------- */
    i64 per_sm = (i64)rint((double)tile_sum / (double)S);
    if (per_sm < 1) per_sm = 1;
    i64 half = per_sm / 2 > 1 ? per_sm / 2 : 1, nc = 0;
    i64 fill_longest = S < tiles[longest] ? S : tiles[longest];
    for (int j = 0; j < 4; j++)
        if ((cands[j].m_fill = ALLOC_ZERO(a, i64, b)) == NULL) return E_NOMEM;
    if (S >= 2) {
        /* every long sequence fills its share of the SMs; the others stay whole */
        Candidate *all = candidate(&cands[nc++], SHAPE_FILL_ALL, tiles[longest] + 1, k, copies);
        if (balanced_fillers(a, m, &c, tiles, b, S, k, c.rows / copies, all->m_fill) != E_OK) return E_NOMEM;
        /* the longest fills what the others leave, they in chunks of half an SM's share (or a whole one) */
        candidate(&cands[nc++], SHAPE_FILL_LONGEST, half, k, copies)->m_fill[longest] = fill_longest;
        if (per_sm > half)
            candidate(&cands[nc++], SHAPE_FILL_LONGEST, per_sm, k, copies)->m_fill[longest] = fill_longest;
    }
    candidate(&cands[nc++], SHAPE_CHUNKS, half, k, copies); /* no filler: short equal chunks */
    i64 kept = 0; /* makespan._distinct: the first of equal plans stays */
    for (i64 j = 0; j < nc; j++) {
        int dup = 0;
        for (i64 l = 0; l < kept && !dup; l++) dup = same_plan(&cands[l], &cands[j], tiles, b);
        if (!dup) cands[kept++] = cands[j];
    }
    nc = kept;

    /* ---- plan in order of the bound; skip the shapes that cannot be among the timed ------------------- */
    double *bounds = ALLOC(a, double, nc), *planned_T = ALLOC(a, double, nc), *sorted_T = ALLOC(a, double, nc);
    i64 *by_bound = ALLOC(a, i64, nc), *planned = ALLOC(a, i64, nc), *by_T = ALLOC(a, i64, nc);
    Plan *plans = ALLOC(a, Plan, nc);
    if (a->failed) return E_NOMEM;
    for (i64 j = 0; j < nc; j++)
        if (isnan(bounds[j] = work_bound(a, m, &c, tiles, b, S, &cands[j]))) return E_NOMEM;
    argsort_f64(a, by_bound, bounds, nc, 0);
    i64 num_planned = 0;
    for (i64 j = 0; j < nc; j++) {
        i64 n = by_bound[j];
        if (num_planned >= timed_max) {
            for (i64 l = 0; l < num_planned; l++) sorted_T[l] = planned_T[l];
            sort_f64(a, sorted_T, num_planned, 0);
            if (bounds[n] * (1 - 1e-9) > sorted_T[timed_max - 1]) break;
        }
        const Candidate *cd = &cands[n];
        int rc = backward_plan(a, m, &c, tiles, b, S, cd->m_fill, cd->chunk, cd->k, cd->copies, &plans[n]);
        if (rc == E_SKIP) continue;
        if (rc != E_OK) return rc;
        planned[num_planned] = n, planned_T[num_planned++] = plans[n].T;
    }
    /* planned ones by (T, candidate order) */
    for (i64 j = 0; j < num_planned; j++) by_T[j] = j;
    for (i64 j = 1; j < num_planned; j++) /* insertion sort: a handful of plans */
        for (i64 l = j; l > 0; l--) {
            i64 x = by_T[l], y = by_T[l - 1];
            int before = planned_T[x] < planned_T[y] || (planned_T[x] == planned_T[y] && planned[x] < planned[y]);
            if (!before) break;
            by_T[l] = y, by_T[l - 1] = x;
        }

    /* ---- time the best plans and the static schedule; the fastest wins (ties: the earlier) ------------ */
    info->num_candidates = nc;
    info->winner = -1;
    double best_span = 0.0;
    for (i64 j = 0; j < num_planned && j < timed_max; j++) {
        i64 n = planned[by_T[j]];
        Cols cols;
        int rc = materialise(a, m, &c, &plans[n], lens, s_q, S, spread, &cols);
        if (rc != E_OK) return rc;
        double span = cols.end[0];
        for (i64 t = 1; t < cols.n; t++) span = cols.end[t] > span ? cols.end[t] : span;
        if (info->winner < 0 || span < best_span) {
            best_span = span, *out = cols;
            info->winner = n, info->shape = cands[n].shape, info->fillers = plans[n].num_fillers;
            info->k = cands[n].k, info->copies = cands[n].copies, info->chunk = cands[n].chunk;
            info->planned_T = plans[n].T;
        }
    }
    Cols base;
    int rc = static_plan(a, m, lens, b, s_q, S, k, per_token, spread, &base, &info->static_chunk,
                         &info->static_per_token);
    if (rc != E_OK) return rc;
    double span = base.end[0];
    for (i64 t = 1; t < base.n; t++) span = base.end[t] > span ? base.end[t] : span;
    if (info->winner < 0 || span < best_span) *out = base, info->winner = -1;
    return E_OK;
}
