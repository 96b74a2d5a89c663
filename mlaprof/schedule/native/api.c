/* The library's entry points (a flat C ABI, for ctypes): a scheduler call returns an opaque result and its
   sizes, which Python copies out (mlp_copy) and frees (mlp_free).  A NULL result and a negative status
   (core.h's E_*) mean: plan in Python instead. */
#include <stdlib.h>

#include "core.h"
#include "rollouts.h"

#define MLP_ABI 2 /* native/__init__.py refuses a library of another version */

typedef struct {
    Arena arena;
    Cols cols;
    MakespanInfo info;
} Result;

i64 mlp_abi(void) { return MLP_ABI; }
i64 mlp_model_size(void) { return (i64)sizeof(Model); } /* Python checks its mirror of the struct */

/* sizes: status (core.h's E_*), then tasks, inputs over all tasks and reductions (tasks with inputs) */
static Result *finish(Result *r, int rc, i64 *sizes) {
    if (rc == E_OK && r->arena.failed) rc = E_NOMEM; /* a sort ran out of scratch: its order is not the plan's */
    sizes[0] = rc;
    if (rc != E_OK) {
        arena_free(&r->arena);
        free(r);
        return NULL;
    }
    const Cols *c = &r->cols;
    sizes[1] = c->n, sizes[2] = sizes[3] = 0;
    for (i64 t = 0; t < c->n; t++) sizes[2] += c->fan[t], sizes[3] += c->fan[t] > 0;
    return r;
}

Result *mlp_static(const Model *m, const i64 *lens, i64 b, i64 s_q, i64 num_sms, i64 fanin, i64 per_token,
                   const double *spread, i64 *sizes) {
    Result *r = calloc(1, sizeof(Result));
    if (r == NULL) return sizes[0] = E_NOMEM, NULL;
    int used;
    int rc = static_plan(&r->arena, m, lens, b, s_q, num_sms, fanin, (int)per_token, spread, &r->cols,
                         &r->info.static_chunk, &used);
    r->info.static_per_token = used;
    r->info.winner = -1;
    return finish(r, rc, sizes);
}

Result *mlp_makespan(const Model *m, const i64 *lens, i64 b, i64 s_q, i64 num_sms, i64 per_token, i64 timed,
                     const double *spread, i64 *sizes) {
    Result *r = calloc(1, sizeof(Result));
    if (r == NULL) return sizes[0] = E_NOMEM, NULL;
    int rc = makespan(&r->arena, m, lens, b, s_q, num_sms, (int)per_token, timed, spread, &r->cols, &r->info);
    return finish(r, rc, sizes);
}

/* ints: the info (9: candidates, winner (-1: static), shape, fillers, fan-in, copies, chunk tiles, static
   chunk tokens, static per-token); op, seq, q0, qn, kv0, kv1, final, sm (n each); per reduction its task
   and its number of inputs; the inputs, in task order; the queue lengths (SMs); the queues one after the
   other (n).  doubles: start, end (n each, us: the ns / 1e3 Python would compute); the winner's planned T
   (ns). */
void mlp_copy(const Result *r, i64 *ints, double *doubles) {
    const Cols *c = &r->cols;
    const MakespanInfo *f = &r->info;
    i64 info[] = {f->num_candidates, f->winner, f->shape, f->fillers, f->k, f->copies, f->chunk, f->static_chunk,
                  f->static_per_token};
    for (int j = 0; j < 9; j++) *ints++ = info[j];
    i64 n = c->n;
    const i64 *cols[] = {c->op, c->seq, c->q0, c->qn, c->kv0, c->kv1, c->final, c->sm};
    for (int j = 0; j < 8; j++)
        for (i64 t = 0; t < n; t++) *ints++ = cols[j][t];
    for (i64 t = 0; t < n; t++)
        if (c->fan[t] > 0) *ints++ = t;
    for (i64 t = 0; t < n; t++)
        if (c->fan[t] > 0) *ints++ = c->fan[t];
    for (i64 t = 0; t < n; t++)
        for (i64 x = 0; x < c->fan[t]; x++) *ints++ = c->in_idx[c->in_off[t] + x];
    for (i64 s = 0; s < c->num_sms; s++) *ints++ = c->q_len[s];
    for (i64 t = 0; t < n; t++) *ints++ = c->q_idx[t];
    for (i64 t = 0; t < n; t++) *doubles++ = c->start[t] / 1e3;
    for (i64 t = 0; t < n; t++) *doubles++ = c->end[t] / 1e3;
    *doubles = f->planned_T;
}

void mlp_free(Result *r) {
    if (r == NULL) return;
    arena_free(&r->arena);
    free(r);
}
