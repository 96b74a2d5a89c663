/* costmodel.CostModel's span formulas for one task (its numpy expressions, element by element, in their
   order of operations: a + b * c + d is (a + (b * c)) + d, an int64 product is formed before it meets a
   double, np.maximum(x, y) is x > y ? x : y up to which of two equal values it returns). */
#ifndef MLP_COST_H
#define MLP_COST_H

#include "core.h"

static inline double max2(double x, double y) { return y > x ? y : x; } /* Python's max(x, y) */

/* CostModel.load_ns: per KV tile, whatever its tokens (the tile is loaded whole) */
static inline double load_ns(const Model *m, i64 tokens) {
    (void)tokens;
    return m->load_base_ns + m->load_byte_ns * (double)m->tile_bytes * 1.0;
}

/* costmodel.compute_flops(KV_TILE_TOKENS, rows, row_granule) */
static inline i64 tile_flops(const Model *m, i64 rows) {
    i64 padded = (rows + m->row_granule - 1) / m->row_granule * m->row_granule;
    return padded * m->tile_tokens * m->flops_per_row_token;
}

/* CostModel.compute_ns: a whole tile's FLOPs, plus the masking of a short last tile */
static inline double compute_ns(const Model *m, i64 tokens, i64 rows) {
    return m->compute_base_ns + m->compute_flop_ns * (double)tile_flops(m, rows)
           + m->compute_short_ns * (tokens < m->tile_tokens ? 1.0 : 0.0);
}

/* CostModel.reduce_ns */
static inline double reduce_ns(const Model *m, i64 fanin, i64 rows) {
    return m->reduce_base_ns + m->reduce_row_ns * (double)rows
           + m->reduce_byte_ns * (double)(fanin * rows * m->scratch_row_bytes);
}

/* CostModel.store_ns */
static inline double store_ns(const Model *m, i64 rows, int final, int reduction) {
    if (reduction) return m->reduce_store_ns + m->reduce_fence_ns * (final ? 0.0 : 1.0);
    return m->store_base_ns
           + m->store_byte_ns * (double)(rows * (final ? m->output_row_bytes : m->scratch_row_bytes));
}

/* CostModel.setup */
static inline double setup_ns(const Model *m, int reduction) {
    return reduction ? m->reduce_setup_ns : m->setup_ns;
}

/* CostModel.partial_ns */
static inline double partial_ns(const Model *m, i64 tokens, i64 rows, int final) {
    i64 t = m->tile_tokens;
    i64 n = (tokens + t - 1) / t;
    if (n < 1) n = 1;
    i64 last = tokens - t * (n - 1);
    double lf = load_ns(m, t), cf = compute_ns(m, t, rows);
    double ll = load_ns(m, last), cl = compute_ns(m, last, rows);
    double first = max2(m->setup_ns, n == 1 ? ll : lf);
    double body = n == 1 ? first + cl
                         : first + (double)(n - 2 > 0 ? n - 2 : 0) * max2(lf, cf) + max2(ll, cf) + cl;
    return body + store_ns(m, rows, final, 0);
}

/* CostModel.reduction_ns */
static inline double reduction_ns(const Model *m, i64 fanin, i64 rows, int final) {
    return m->reduce_setup_ns + reduce_ns(m, fanin, rows) + store_ns(m, rows, final, 1);
}

/* CostModel.partial_linear: (fixed ns, ns per full tile) */
static inline void partial_linear(const Model *m, i64 rows, int final, double *fixed, double *per_tile) {
    double load = load_ns(m, m->tile_tokens), comp = compute_ns(m, m->tile_tokens, rows);
    double tile = max2(load, comp);
    *per_tile = tile;
    *fixed = max2(m->setup_ns, load) - tile + comp + store_ns(m, rows, final, 0);
}

#endif
