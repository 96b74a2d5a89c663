/* static.group_sizes, static.merge_levels, static.tree_template and makespan._tree. */
#include "trees.h"

i64 group_sizes(i64 count, i64 fanin, i64 *sizes) {
    i64 groups = (count + fanin - 1) / fanin;
    i64 base = count / groups, extra = count % groups;
    for (i64 g = 0; g < groups; g++) sizes[g] = base + (g < extra ? 1 : 0);
    return groups;
}

int merge_levels(Arena *a, const i64 *frontier, i64 n, i64 fanin, merge_fn merge, void *ctx) {
    i64 level = 0;
    while (n > 1) {
        i64 groups = (n + fanin - 1) / fanin;
        i64 *sizes = ALLOC(a, i64, groups), *next = ALLOC(a, i64, groups);
        if (a->failed) return E_NOMEM;
        group_sizes(n, fanin, sizes);
        for (i64 g = 0, pos = 0; g < groups; pos += sizes[g], g++)
            next[g] = sizes[g] == 1 ? frontier[pos] : merge(ctx, frontier + pos, sizes[g], groups == 1, level);
        frontier = next, n = groups, level++;
    }
    return a->failed ? E_NOMEM : E_OK;
}

static int tree_alloc(Arena *a, Tree *t, i64 max_merges, i64 max_inputs, int with_ranges) {
    t->count = 0;
    t->in_off = ALLOC(a, i64, max_merges);
    t->in_len = ALLOC(a, i64, max_merges);
    t->root = ALLOC(a, i64, max_merges);
    t->ins = ALLOC(a, i64, max_inputs);
    t->lo = t->hi = t->level = NULL;
    if (with_ranges) {
        t->lo = ALLOC(a, i64, max_merges);
        t->hi = ALLOC(a, i64, max_merges);
        t->level = ALLOC(a, i64, max_merges);
    }
    return a->failed ? E_NOMEM : E_OK;
}

static i64 tree_add(Tree *t, const i64 *group, i64 size, int root) { /* returns the merge's index */
    i64 r = t->count++;
    i64 off = r == 0 ? 0 : t->in_off[r - 1] + t->in_len[r - 1];
    t->in_off[r] = off, t->in_len[r] = size, t->root[r] = root;
    for (i64 j = 0; j < size; j++) t->ins[off + j] = group[j];
    return r;
}

/* ---- static.tree_template ------------------------------------------------------------------------- */
typedef struct {
    Tree *t;
    i64 m;
} TemplateCtx;

static i64 template_merge(void *ctx, const i64 *group, i64 size, int is_root, i64 level) {
    TemplateCtx *c = ctx;
    Tree *t = c->t;
    i64 first = group[0], last = group[size - 1];
    i64 lo = first < c->m ? first : t->lo[first - c->m];
    i64 hi = last < c->m ? last : t->hi[last - c->m];
    i64 r = tree_add(t, group, size, is_root);
    t->lo[r] = lo, t->hi[r] = hi, t->level[r] = level;
    return c->m + r;
}

int tree_template(Arena *a, i64 m, i64 fanin, Tree *out) {
    /* every merge takes two or more nodes and leaves one: fewer than m merges, fewer than 2m inputs */
    if (tree_alloc(a, out, m, 2 * m, 1) != E_OK) return E_NOMEM;
    i64 *frontier = ALLOC(a, i64, m);
    if (frontier == NULL) return E_NOMEM;
    for (i64 j = 0; j < m; j++) frontier[j] = j;
    TemplateCtx ctx = {out, m};
    return merge_levels(a, frontier, m, fanin, template_merge, &ctx);
}

/* ---- makespan._tree --------------------------------------------------------------------------------- */
static i64 backward_merge(void *ctx, const i64 *group, i64 size, int is_root, i64 level) {
    (void)level;
    return ~tree_add((Tree *)ctx, group, size, is_root);
}

int backward_tree(Arena *a, i64 m, i64 k, Tree *out) {
    i64 depth = 0, cap = 1;
    while (cap < m) depth++, cap *= k;
    i64 skip = 0;
    if (depth >= 2) { /* largest x with x + ceil((m - x) / k) <= k^(D-1), keeping >= 2 leaves per bottom group */
        i64 upper = cap / k;
        skip = (upper * k - m) / (k - 1);
        if (skip > m - 2) skip = m - 2;
        if (skip < 0) skip = 0;
        while (skip > 0 && skip + (m - skip + k - 1) / k > upper) skip--;
    }
    i64 bottom = m - skip;
    /* the bottom level's merges take single leaves (sizes of at least one): at most m merges, 2m inputs */
    if (tree_alloc(a, out, m + 1, 2 * m + 1, 0) != E_OK) return E_NOMEM;
    i64 *frontier = ALLOC(a, i64, m), *sizes = ALLOC(a, i64, m);
    if (a->failed) return E_NOMEM;
    i64 n = 0;
    if (skip) {
        i64 groups = group_sizes(bottom, k, sizes), start = 0;
        for (i64 g = 0; g < groups; g++) {
            i64 *leaves = ALLOC(a, i64, sizes[g]);
            if (leaves == NULL) return E_NOMEM;
            for (i64 j = 0; j < sizes[g]; j++) leaves[j] = start + j;
            frontier[n++] = ~tree_add(out, leaves, sizes[g], 0);
            start += sizes[g];
        }
        for (i64 j = bottom; j < m; j++) frontier[n++] = j;
    } else {
        for (i64 j = 0; j < m; j++) frontier[n++] = j;
    }
    return merge_levels(a, frontier, n, k, backward_merge, out);
}
