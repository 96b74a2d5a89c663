/* The makespan scheduler's rollout: makespan._plan (shape, tail, fill, whole sequences) and
   makespan._materialise (tasks and queues of a plan). */
#ifndef MLP_BACKWARD_H
#define MLP_BACKWARD_H

#include "core.h"
#include "trees.h"

typedef struct { /* makespan._Costs: the planner's affine costs for one workload's row count (ns) */
    i64 rows;
    double a_p, tau, a_f, lag;
} Costs;

void costs_init(const Model *m, i64 rows, Costs *c);

/* One planned rollout (makespan._plan's dict).  Sequence i's leaves are leaf_off[i] .. leaf_off[i + 1] - 1;
   its tree's placements are red_off[i] + q * tree[i]->count + r for merge r of query-token copy q. */
typedef struct {
    double T;
    i64 b, chunk, k, copies, num_fillers;
    i64 *leaf_off, *leaf_n;  /* leaf_n: KV tiles of each leaf (-1: a filler's leaf before the fill) */
    i64 *is_filler;          /* per sequence */
    Tree **tree;             /* per sequence; NULL for a whole sequence */
    i64 *red_off, *red_sm;   /* tail placements of the merges: SM and reversed end */
    double *red_re;
    i64 *leaf_placed, *leaf_sm; /* a fixed leaf placed in the tail (SM, reversed end), or a filler's leaf */
    double *leaf_re, *leaf_start; /* (its SM and reversed start) */
    i64 *whole_sm;            /* a whole sequence's SM and reversed end */
    double *whole_re;
} Plan;

/* makespan._plan: m_fill[i] >= 2 makes sequence i a filler over that many partials */
int backward_plan(Arena *a, const Model *m, const Costs *c, const i64 *tiles, i64 b, i64 num_sms,
                  const i64 *m_fill, i64 chunk, i64 k, i64 copies, Plan *p);

/* makespan._materialise, then the timeline */
int materialise(Arena *a, const Model *m, const Costs *c, const Plan *p, const i64 *lens, i64 s_q,
                i64 num_sms, const double *spread, Cols *out);

#endif
