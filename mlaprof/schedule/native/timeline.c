/* plan.evaluate: the task-level timeline (plan.task_costs, then plan._evaluate_loop's per-SM walk). */
#include <math.h>

#include "core.h"
#include "cost.h"

typedef struct { /* plan.TaskCosts, one task's row */
    double first_load, loads, comps, late_loads, first_comp, last_comp, merge, store, setups, ahead, inv_sqrt;
    int partial;
} TaskCost;

/* plan.task_costs for task t */
static void task_cost(const Model *m, const Cols *c, i64 t, TaskCost *k) {
    i64 T = m->tile_tokens, stages = m->stages;
    int partial = c->op[t] == OP_PARTIAL;
    i64 rows = c->qn[t] * m->heads_q;
    i64 kv_len = c->kv1[t] - c->kv0[t];
    if (kv_len < 1) kv_len = 1;
    i64 tiles = (kv_len + T - 1) / T;
    i64 last = kv_len - T * (tiles - 1);
    double lf = load_ns(m, T), cf = compute_ns(m, T, rows);
    double ll = load_ns(m, last), cl = compute_ns(m, last, rows);
    k->late_loads = tiles > stages ? (double)(tiles - 1 - stages) * lf + ll : 0.0;
    k->first_load = tiles == 1 ? ll : lf;
    k->loads = (double)(tiles - 1) * lf + ll;
    k->comps = (double)(tiles - 1) * cf + cl;
    k->first_comp = tiles == 1 ? cl : cf;
    k->last_comp = cl;
    k->merge = reduce_ns(m, c->fan[t], rows);
    k->store = store_ns(m, rows, (int)c->final[t], !partial);
    k->setups = setup_ns(m, !partial);
    k->ahead = (double)(stages - 1) * cf;
    k->inv_sqrt = 1.0 / sqrt((double)tiles);
    k->partial = partial;
}

/* plan._evaluate_loop: one SM at a time until it blocks on an unfinished input; the blocker's completion
   wakes it.  Each task's times depend only on its SM's previous task and its inputs' ends, so the order
   SMs are walked in changes nothing.  E_DEADLOCK when some SM cannot finish its queue (Python then
   recomputes, to name the stuck SMs). */
int timeline(Arena *a, const Model *m, const double *spread, Cols *c) {
    i64 n = c->n, num_sms = c->num_sms;
    TaskCost *k = ALLOC(a, TaskCost, n);
    i64 *q_start = ALLOC(a, i64, num_sms), *ptr = ALLOC_ZERO(a, i64, num_sms);
    unsigned char *done = ALLOC_ZERO(a, unsigned char, n);
    i64 *waiting = ALLOC(a, i64, n);        /* first SM waiting on task t, or -1 */
    i64 *next_waiting = ALLOC(a, i64, num_sms); /* the next SM waiting on the same task */
    i64 *ready = ALLOC(a, i64, num_sms);
    double *prod = ALLOC(a, double, num_sms), *cons = ALLOC_ZERO(a, double, num_sms);
    double *qfree = ALLOC_ZERO(a, double, num_sms);
    if (a->failed) return E_NOMEM;
    for (i64 t = 0; t < n; t++) {
        task_cost(m, c, t, &k[t]);
        waiting[t] = -1;
        c->end[t] = -1.0;
    }
    i64 pos = 0, num_ready = 0, finished = 0;
    for (i64 s = 0; s < num_sms; s++) {
        q_start[s] = pos, pos += c->q_len[s];
        prod[s] = m->first_load_ns;
        ready[num_ready++] = s;
    }
    double lat = m->sem_latency_ns;
    while (num_ready > 0) {
        i64 sm = ready[--num_ready];
        const i64 *q = c->q_idx + q_start[sm];
        while (ptr[sm] < c->q_len[sm]) {
            i64 t = q[ptr[sm]];
            const TaskCost *kt = &k[t];
            double s0 = cons[sm], issue = s0 + kt->setups, ce;
            if (kt->partial) {
                double f = 1.0 + spread[sm] * kt->inv_sqrt;
                double ls = prod[sm] > qfree[sm] ? prod[sm] : qfree[sm];
                double le = ls + kt->loads * f;
                double c0 = ls + kt->first_load * f;
                if (issue > c0) c0 = issue;
                if (kt->late_loads > 0.0) { /* the loads past the stage buffers follow the first tile's compute */
                    double le_late = c0 + kt->first_comp + kt->late_loads * f;
                    if (le_late > le) le = le_late;
                }
                ce = c0 + kt->comps;
                if (le + kt->last_comp > ce) ce = le + kt->last_comp;
                prod[sm] = le > ce - kt->ahead ? le : ce - kt->ahead;
                qfree[sm] = ce - kt->last_comp;
            } else {
                i64 blocker = -1;
                for (i64 j = c->in_off[t]; j < c->in_off[t] + c->fan[t]; j++) {
                    i64 i = c->in_idx[j];
                    if (!done[i]) {
                        blocker = i;
                        break;
                    }
                    if (c->end[i] + lat > issue) issue = c->end[i] + lat;
                }
                if (blocker >= 0) {
                    next_waiting[sm] = waiting[blocker];
                    waiting[blocker] = sm;
                    break;
                }
                ce = issue + kt->merge;
            }
            double e = ce + kt->store;
            c->start[t] = s0, c->end[t] = e;
            cons[sm] = e;
            done[t] = 1;
            ptr[sm]++;
            finished++;
            for (i64 w = waiting[t]; w >= 0; w = next_waiting[w]) ready[num_ready++] = w;
            waiting[t] = -1;
        }
    }
    return finished == pos ? E_OK : E_DEADLOCK; /* pos: the tasks on all queues */
}
