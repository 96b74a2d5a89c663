/* What the native scheduler's files share: the cost model's constants, a bump allocator, binary heaps,
   stable sorts, and the task table the schedulers produce.

   Every function here mirrors a Python function of mlaprof/schedule (named in its comment) operation for
   operation, in the same order, so that the doubles come out bit for bit the same: the Python code is the
   reference, and tests/test_schedule_native.py holds the two to it.  Built without -ffast-math and with
   -ffp-contract=off (no fused multiply-adds), as Python's floats are. */
#ifndef MLP_CORE_H
#define MLP_CORE_H

#include <stddef.h>
#include <stdint.h>

typedef int64_t i64;

/* costmodel.CostModel's constants and the format constants its formulas use; native/__init__.py fills it
   (field for field, same names). */
typedef struct {
    double setup_ns, reduce_setup_ns, load_base_ns, load_byte_ns, compute_base_ns, compute_flop_ns,
        compute_short_ns, reduce_base_ns, reduce_row_ns, reduce_byte_ns, store_base_ns, store_byte_ns,
        reduce_store_ns, reduce_fence_ns, first_load_ns, sem_latency_ns;
    i64 row_granule;
    i64 tile_tokens, tile_bytes, flops_per_row_token, scratch_row_bytes, output_row_bytes, heads_q, stages,
        max_fanin;
} Model;

/* ---- memory: every allocation of one scheduler call comes from one arena, freed at once ------------- */
typedef struct Block Block;
typedef struct {
    Block *head;
    int failed; /* an allocation failed: the call reports an error and Python plans instead */
} Arena;

/* NULL (and a->failed) when out of memory.  ALLOC leaves the memory as it was (every array so allocated is
   written before it is read: zero-filling them all cost a fifth of a makespan search); ALLOC_ZERO fills
   it with zeros, for the arrays that count on that.  Built with -DMLP_POISON, ALLOC fills its memory with
   garbage instead, so that a test run shows any array that should have been ALLOC_ZERO. */
void *arena_alloc(Arena *a, size_t bytes, int zero);
void arena_free(Arena *a);
#define ALLOC_N(a, type, count, zero) \
    ((type *)arena_alloc((a), sizeof(type) * (size_t)((count) > 0 ? (count) : 1), (zero)))
#define ALLOC(a, type, count) ALLOC_N(a, type, count, 0)
#define ALLOC_ZERO(a, type, count) ALLOC_N(a, type, count, 1)

/* ---- binary min-heaps of small structs (heapq's order: each pop returns the least item; with a total
   order on the items the sequence of pops is heapq's whatever the layout).  HEAP_FUNCTIONS(name, T, less)
   defines name_push, name_pop, name_replace and name_heapify over an array of T and its length. */
#define HEAP_FUNCTIONS(name, T, less)                                                                       \
    static inline void name##_sift_down(T *h, size_t len, size_t i) {                                       \
        T x = h[i];                                                                                          \
        for (;;) {                                                                                           \
            size_t c = 2 * i + 1;                                                                            \
            if (c >= len) break;                                                                             \
            if (c + 1 < len && less(&h[c + 1], &h[c])) c++;                                                  \
            if (!less(&h[c], &x)) break;                                                                     \
            h[i] = h[c], i = c;                                                                              \
        }                                                                                                    \
        h[i] = x;                                                                                            \
    }                                                                                                        \
    static inline void name##_push(T *h, size_t *len, T x) {                                                \
        size_t i = (*len)++;                                                                                 \
        while (i > 0 && less(&x, &h[(i - 1) / 2])) h[i] = h[(i - 1) / 2], i = (i - 1) / 2;                   \
        h[i] = x;                                                                                            \
    }                                                                                                        \
    static inline T name##_pop(T *h, size_t *len) {                                                          \
        T top = h[0];                                                                                        \
        if (--*len > 0) h[0] = h[*len], name##_sift_down(h, *len, 0);                                        \
        return top;                                                                                          \
    }                                                                                                        \
    /* a pop, then a push of x: the same contents as the two (heapq.heapreplace), one sift instead of two */ \
    static inline T name##_replace(T *h, size_t len, T x) {                                                 \
        T top = h[0];                                                                                        \
        h[0] = x, name##_sift_down(h, len, 0);                                                               \
        return top;                                                                                          \
    }                                                                                                        \
    static inline void name##_heapify(T *h, size_t len) {                                                   \
        for (size_t i = len / 2; i-- > 0;) name##_sift_down(h, len, i);                                      \
    }

/* (time, SM) pairs, ordered as Python orders the tuples: by time, then SM */
typedef struct {
    double t;
    i64 sm;
} SmFree;
static inline int sm_free_less(const SmFree *a, const SmFree *b) {
    return a->t < b->t || (a->t == b->t && a->sm < b->sm);
}
HEAP_FUNCTIONS(sm_heap, SmFree, sm_free_less)

/* ---- sorting: indices by key, ties in index order (numpy's kind="stable", Python's sorted); scratch
   from the arena ----------------------------------------------------------------------------------------- */
void argsort_f64(Arena *a, i64 *idx, const double *key, i64 n, int descending); /* idx: 0..n-1, sorted */
void argsort_i64(Arena *a, i64 *idx, const i64 *key, i64 n, int descending);
void sort_f64(Arena *a, double *values, i64 n, int descending);
double kth_largest(double *values, i64 n, i64 k); /* k = 1: the largest; reorders values */

/* numpy's float64 sum (pairwise, 8-way unrolled): ndarray.sum() gives exactly this */
double numpy_sum(const double *v, i64 n);

/* ---- the task table a scheduler returns (Python: the columns of plan.build_tasks) -------------------- */
typedef struct {
    i64 n;                               /* tasks; ids are positions */
    i64 *op, *seq, *q0, *qn, *kv0, *kv1; /* opcode, sequence, query tokens [q0, q0 + qn), KV range */
    i64 *final, *sm, *fan;               /* writes the output, SM it runs on, number of inputs */
    i64 *in_off, *in_idx;                /* task t merges in_idx[in_off[t] .. in_off[t] + fan[t]) */
    i64 num_sms, *q_len, *q_idx;         /* queues, one after the other: SM s runs q_len[s] tasks */
    double *start, *end;                 /* the timeline's prediction (ns) */
} Cols;

int cols_alloc(Arena *a, Cols *c, i64 n, i64 num_inputs, i64 num_sms);

enum { OP_PARTIAL = 1, OP_REDUCTION = 2 }; /* format.Opcode; checked by native/__init__.py */
/* E_SKIP: a candidate shape the backward planner cannot place (more filler leaves than SMs); skipped, as
   makespan._plan skips it */
enum { E_OK = 0, E_NOMEM = -1, E_DEADLOCK = -2, E_INTERNAL = -3, E_SKIP = -4 };

/* ---- the pieces ------------------------------------------------------------------------------------ */
/* plan.evaluate: task_costs and the per-SM walk of the timeline, into c->start and c->end */
int timeline(Arena *a, const Model *m, const double *spread, Cols *c);

/* static.static_plan with static.best_static_plan's choice of reduction kind (per_token < 0: the model's) */
int static_plan(Arena *a, const Model *m, const i64 *lens, i64 b, i64 s_q, i64 num_sms, i64 fanin,
                int per_token, const double *spread, Cols *out, i64 *chunk_tokens, int *per_token_used);

/* static.prefer_per_token */
int prefer_per_token(const Model *m, i64 s_q, i64 fanin);

/* static.merge_levels: reduce ``frontier`` (n node ids) to one, calling merge(ctx, group, size, is_root,
   level) for every group of two or more; a group of one passes up as it is */
typedef i64 (*merge_fn)(void *ctx, const i64 *group, i64 size, int is_root, i64 level);
int merge_levels(Arena *a, const i64 *frontier, i64 n, i64 fanin, merge_fn merge, void *ctx);

#endif
