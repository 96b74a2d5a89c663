/* static.static_plan (with best_static_plan's choice): equal chunks, a balanced tree per split sequence,
   tasks handed to the SM that frees first, then the timeline. */
#include "core.h"
#include "cost.h"
#include "trees.h"

int prefer_per_token(const Model *m, i64 s_q, i64 fanin) {
    if (s_q == 1) return 0;
    i64 rows = s_q * m->heads_q;
    return reduction_ns(m, fanin, m->heads_q, 0) < reduction_ns(m, fanin, rows, 0);
}

int static_plan(Arena *a, const Model *m, const i64 *lens, i64 b, i64 s_q, i64 num_sms, i64 fanin,
                int per_token, const double *spread, Cols *out, i64 *chunk_tokens, int *per_token_used) {
    const i64 T = m->tile_tokens;
    if (per_token < 0) per_token = prefer_per_token(m, s_q, fanin);
    *per_token_used = per_token;
    i64 total = 0;
    for (i64 i = 0; i < b; i++) total += lens[i];
    i64 per_sm = (total + num_sms - 1) / num_sms;
    i64 chunk = (per_sm + T - 1) / T * T; /* ceil(total / SMs), rounded up to whole KV tiles */
    *chunk_tokens = chunk;

    /* static.split_all: each sequence's chunk count and first partial */
    i64 *parts = ALLOC(a, i64, b), *first = ALLOC(a, i64, b);
    Tree **tpl = ALLOC_ZERO(a, Tree *, b);
    if (a->failed) return E_NOMEM;
    i64 num_partials = 0, num_red = 0, num_inputs = 0, copies = per_token ? s_q : 1;
    for (i64 i = 0; i < b; i++) {
        i64 tiles = (lens[i] + T - 1) / T, p = 1;
        if (lens[i] > chunk) {
            p = (lens[i] + chunk - 1) / chunk;
            if (p > tiles) p = tiles;
        }
        parts[i] = p, first[i] = num_partials, num_partials += p;
        if (p == 1) continue;
        for (i64 j = 0; j < i && tpl[i] == NULL; j++) /* one template per leaf count */
            if (parts[j] == p) tpl[i] = tpl[j];
        if (tpl[i] == NULL) {
            tpl[i] = ALLOC(a, Tree, 1);
            if (tpl[i] == NULL || tree_template(a, p, fanin, tpl[i]) != E_OK) return E_NOMEM;
        }
        const Tree *t = tpl[i];
        num_red += copies * t->count;
        num_inputs += copies * tree_inputs(t);
    }
    i64 n = num_partials + num_red;
    if (cols_alloc(a, out, n, num_inputs, num_sms) != E_OK) return E_NOMEM;
    i64 *level = ALLOC(a, i64, n);
    double *dur = ALLOC(a, double, n);
    if (a->failed) return E_NOMEM;

    /* partials in sequence order: whole tiles, sizes within one tile of each other */
    for (i64 i = 0; i < b; i++) {
        i64 tiles = (lens[i] + T - 1) / T, p = parts[i];
        i64 base = tiles / p, extra = tiles % p;
        for (i64 j = 0; j < p; j++) {
            i64 t = first[i] + j;
            i64 size = base + (j < extra ? 1 : 0), pos = j * base + (j < extra ? j : extra);
            i64 end = (pos + size) * T;
            out->op[t] = OP_PARTIAL, out->seq[t] = i, out->q0[t] = 0, out->qn[t] = s_q;
            out->kv0[t] = pos * T, out->kv1[t] = lens[i] < end ? lens[i] : end;
            out->final[t] = p == 1, out->fan[t] = 0, out->in_off[t] = 0;
        }
    }
    /* then per split sequence its tree, once per query token when per token (the copies share the leaves) */
    i64 t = num_partials, in_pos = 0;
    for (i64 i = 0; i < b; i++) {
        if (parts[i] == 1) continue;
        const Tree *tp = tpl[i];
        i64 p = parts[i], base_id = t; /* the first copy's merge r is task base_id + r */
        for (i64 c = 0; c < copies; c++) {
            for (i64 r = 0; r < tp->count; r++, t++) {
                out->op[t] = OP_REDUCTION, out->seq[t] = i;
                out->q0[t] = per_token ? c : 0, out->qn[t] = per_token ? 1 : s_q;
                out->kv0[t] = out->kv0[first[i] + tp->lo[r]], out->kv1[t] = out->kv1[first[i] + tp->hi[r]];
                out->final[t] = tp->root[r], level[t] = tp->level[r];
                out->fan[t] = tp->in_len[r], out->in_off[t] = in_pos;
                for (i64 j = 0; j < tp->in_len[r]; j++) {
                    i64 x = tp->ins[tp->in_off[r] + j];
                    out->in_idx[in_pos++] = x < p ? first[i] + x : base_id + (x - p) + tp->count * c;
                }
            }
        }
    }
    /* plan.durations */
    for (i64 u = 0; u < n; u++) {
        i64 rows = out->qn[u] * m->heads_q;
        if (out->op[u] == OP_PARTIAL) {
            i64 kv = out->kv1[u] - out->kv0[u];
            dur[u] = partial_ns(m, kv > 1 ? kv : 1, rows, (int)out->final[u]);
        } else {
            dur[u] = reduction_ns(m, out->fan[u], rows, (int)out->final[u]);
        }
    }
    double lag = m->sem_latency_ns - m->reduce_setup_ns;

    /* partials longest first, then reductions level by level (a topological order), each to the SM that
       frees first; stable sorts, so ties keep task order */
    i64 *order = ALLOC(a, i64, n), *sm_pos = ALLOC(a, i64, num_sms), *q_tmp = ALLOC(a, i64, n);
    i64 *red_order = ALLOC(a, i64, num_red);
    SmFree *heap = ALLOC(a, SmFree, num_sms);
    if (a->failed) return E_NOMEM;
    size_t len = (size_t)num_sms;
    argsort_f64(a, order, dur, num_partials, 1);
    if (num_partials <= num_sms) { /* every SM is free at 0: the i-th longest goes to SM i */
        for (i64 s = 0; s < num_sms; s++) {
            heap[s] = (SmFree){0.0, s};
            if (s < num_partials) heap[s].t = out->end[order[s]] = dur[order[s]], out->sm[order[s]] = s;
        }
        sm_heap_heapify(heap, len);
    } else {
        for (i64 s = 0; s < num_sms; s++) heap[s] = (SmFree){0.0, s};
        for (i64 j = 0; j < num_partials; j++) { /* partials wait for nothing */
            i64 u = order[j];
            SmFree f = heap[0];
            out->end[u] = f.t + dur[u], out->sm[u] = f.sm;
            sm_heap_replace(heap, len, (SmFree){out->end[u], f.sm});
        }
    }
    argsort_i64(a, red_order, level + num_partials, num_red, 0);
    for (i64 j = 0; j < num_red; j++) {
        i64 u = num_partials + red_order[j];
        SmFree f = heap[0];
        const i64 *ins = out->in_idx + out->in_off[u];
        double ready = out->end[ins[0]];
        for (i64 x = 1; x < out->fan[u]; x++)
            if (out->end[ins[x]] > ready) ready = out->end[ins[x]];
        ready += lag;
        double e = (f.t > ready ? f.t : ready) + dur[u];
        out->end[u] = e, out->sm[u] = f.sm;
        sm_heap_replace(heap, len, (SmFree){e, f.sm});
    }
    /* queues: the order tasks were handed out (partials by duration, then reductions by level) */
    for (i64 s = 0; s < num_sms; s++) out->q_len[s] = 0;
    for (i64 j = 0; j < n; j++) {
        i64 u = j < num_partials ? order[j] : num_partials + red_order[j - num_partials];
        out->q_len[out->sm[u]]++;
        q_tmp[j] = u;
    }
    for (i64 s = 0, pos = 0; s < num_sms; s++) sm_pos[s] = pos, pos += out->q_len[s];
    for (i64 j = 0; j < n; j++) out->q_idx[sm_pos[out->sm[q_tmp[j]]]++] = q_tmp[j];
    return timeline(a, m, spread, out);
}
