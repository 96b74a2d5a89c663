/* makespan.makespan_schedule's search (the default path: equal SMs, no per-SM placement). */
#ifndef MLP_ROLLOUTS_H
#define MLP_ROLLOUTS_H

#include "core.h"

typedef struct { /* what Python needs for the schedule's params */
    i64 num_candidates;  /* distinct rollout shapes (params["rollouts"] is this plus the static one) */
    i64 winner;          /* the kept rollout's candidate index, or -1: the static schedule */
    i64 shape, fillers, k, copies, chunk; /* the kept rollout's shape code, fillers, fan-in, copies, chunk tiles */
    double planned_T;    /* its closed-form makespan (ns) */
    i64 static_chunk;    /* the static schedule's chunk (tokens) and reduction kind */
    int static_per_token;
} MakespanInfo;

/* per_token < 0: the cost model's choice (static.prefer_per_token); timed_max: makespan.TIMED */
int makespan(Arena *a, const Model *m, const i64 *lens, i64 b, i64 s_q, i64 S, int per_token, i64 timed_max,
             const double *spread, Cols *out, MakespanInfo *info);

#endif
