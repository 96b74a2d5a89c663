/* Reduction trees: static's balanced template and the makespan scheduler's least-depth tree. */
#ifndef MLP_TREES_H
#define MLP_TREES_H

#include "core.h"

/* A tree's merges in creation order (bottom-up); merge r reads ins[in_off[r] .. in_off[r] + in_len[r]). */
typedef struct {
    i64 count;
    i64 *in_off, *in_len, *ins;
    i64 *root;             /* merge r writes the output */
    i64 *lo, *hi, *level;  /* template only: first and last leaf under merge r, its tree level */
} Tree;

static inline i64 tree_inputs(const Tree *t) { /* inputs over all merges */
    return t->count ? t->in_off[t->count - 1] + t->in_len[t->count - 1] : 0;
}

/* static.group_sizes: sizes of the groups of one tree level over ``count`` inputs, into sizes (returns
   their number; ``sizes`` holds at least ceil(count / fanin)) */
i64 group_sizes(i64 count, i64 fanin, i64 *sizes);

/* static.tree_template: inputs in local ids (leaves 0..m-1, merge r is m + r) */
int tree_template(Arena *a, i64 m, i64 fanin, Tree *out);

/* makespan._tree: inputs encoded as leaf j -> j, merge r -> ~r */
int backward_tree(Arena *a, i64 m, i64 k, Tree *out);

#endif
