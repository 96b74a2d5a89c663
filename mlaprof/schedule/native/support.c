/* The arena, the sorts and numpy's summation that the scheduler files use (see core.h). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* ---- arena ------------------------------------------------------------------------------------------
   Blocks of a call are kept for the next call (up to SPARE_MAX bytes, process-wide): freed, they would sit
   at the top of the heap, malloc would return them to the system, and the next call would page-fault
   them back in (in a VM, 70-odd faults cost more than the makespan search itself).  Only memory is kept,
   never results; a spin lock guards the list (ctypes releases the GIL, so calls may run at once). */
struct Block {
    Block *next;
    size_t used, cap;
    max_align_t data[];
};

enum { BLOCK_BYTES = 1 << 16, SPARE_MAX = 8 << 20 };
static Block *spare;
static size_t spare_bytes;
static atomic_flag spare_lock = ATOMIC_FLAG_INIT;

static void lock_spare(void) {
    while (atomic_flag_test_and_set_explicit(&spare_lock, memory_order_acquire)) {
    }
}

static void unlock_spare(void) { atomic_flag_clear_explicit(&spare_lock, memory_order_release); }

static Block *new_block(size_t bytes) {
    Block *b = NULL;
    lock_spare();
    for (Block **at = &spare; *at != NULL; at = &(*at)->next)
        if ((*at)->cap >= bytes) { /* first fit */
            b = *at, *at = b->next, spare_bytes -= b->cap;
            break;
        }
    unlock_spare();
    if (b == NULL) {
        size_t cap = bytes > BLOCK_BYTES ? bytes : BLOCK_BYTES;
        if ((b = malloc(sizeof(Block) + cap)) == NULL) return NULL;
        b->cap = cap;
    }
    b->used = 0;
    return b;
}

void *arena_alloc(Arena *a, size_t bytes, int zero) {
    bytes = (bytes + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    Block *b = a->head;
    if (b == NULL || b->cap - b->used < bytes) {
        if ((b = new_block(bytes)) == NULL) {
            a->failed = 1;
            return NULL;
        }
        b->next = a->head;
        a->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += bytes;
#ifdef MLP_POISON
    memset(p, zero ? 0 : 0xA5, bytes);
#else
    if (zero) memset(p, 0, bytes);
#endif
    return p;
}

void arena_free(Arena *a) {
    for (Block *b = a->head, *next; b != NULL; b = next) {
        next = b->next;
        lock_spare();
        int keep = spare_bytes + b->cap <= SPARE_MAX;
        if (keep) b->next = spare, spare = b, spare_bytes += b->cap;
        unlock_spare();
        if (!keep) free(b);
    }
    a->head = NULL;
}

/* ---- sorts: (key, index) pairs, ordered by key and then by index.  That order is total, so any correct
   sort gives the stable sort's result; this one is insertion sort on runs of 16, then bottom-up merges.
   A descending sort is an ascending one on the negated keys (-x orders as x reversed, and -0.0 ties with
   0.0 as 0.0 does).  Scratch comes from the arena; if it runs out, the indices stay in order (valid, so
   nothing reads out of bounds) and the call reports E_NOMEM at its end (api.c). */
typedef struct {
    double key;
    i64 idx;
} KeyIdx;

static inline int before(const KeyIdx *x, const KeyIdx *y) {
    return x->key < y->key || (x->key == y->key && x->idx < y->idx);
}

static void sort_pairs(KeyIdx *v, KeyIdx *tmp, i64 n) {
    enum { RUN = 16 };
    for (i64 lo = 0; lo < n; lo += RUN) {
        i64 hi = lo + RUN < n ? lo + RUN : n;
        for (i64 j = lo + 1; j < hi; j++) {
            KeyIdx x = v[j];
            i64 l = j;
            for (; l > lo && before(&x, &v[l - 1]); l--) v[l] = v[l - 1];
            v[l] = x;
        }
    }
    KeyIdx *src = v, *dst = tmp;
    for (i64 width = RUN; width < n; width *= 2) {
        for (i64 lo = 0; lo < n; lo += 2 * width) {
            i64 mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            i64 a = lo, b = mid, o = lo;
            while (a < mid && b < hi) dst[o++] = before(&src[b], &src[a]) ? src[b++] : src[a++];
            while (a < mid) dst[o++] = src[a++];
            while (b < hi) dst[o++] = src[b++];
        }
        KeyIdx *t = src;
        src = dst, dst = t;
    }
    if (src != v) memcpy(v, src, sizeof(KeyIdx) * (size_t)n);
}

static KeyIdx *sorted_pairs(Arena *a, const double *key, const i64 *ikey, i64 n, int descending) {
    KeyIdx *v = ALLOC(a, KeyIdx, n), *tmp = ALLOC(a, KeyIdx, n);
    if (v == NULL || tmp == NULL) return NULL;
    double sign = descending ? -1.0 : 1.0;
    for (i64 j = 0; j < n; j++) v[j] = (KeyIdx){sign * (key ? key[j] : (double)ikey[j]), j};
    sort_pairs(v, tmp, n);
    return v;
}

void argsort_f64(Arena *a, i64 *idx, const double *key, i64 n, int descending) {
    KeyIdx *v = sorted_pairs(a, key, NULL, n, descending);
    for (i64 j = 0; j < n; j++) idx[j] = v ? v[j].idx : j;
}

void argsort_i64(Arena *a, i64 *idx, const i64 *key, i64 n, int descending) {
    /* the keys (tile counts, tree levels) are far below 2^53: as doubles they compare the same */
    KeyIdx *v = sorted_pairs(a, NULL, key, n, descending);
    for (i64 j = 0; j < n; j++) idx[j] = v ? v[j].idx : j;
}

void sort_f64(Arena *a, double *values, i64 n, int descending) {
    KeyIdx *v = sorted_pairs(a, values, NULL, n, descending);
    if (v != NULL)
        for (i64 j = 0; j < n; j++) values[j] = descending ? -v[j].key : v[j].key;
}

/* quickselect: the k-th largest value is one number, whichever way it is found */
double kth_largest(double *v, i64 n, i64 k) {
    i64 lo = 0, hi = n - 1, want = k - 1; /* its index in descending order */
    while (lo < hi) {
        double pivot = v[lo + (hi - lo) / 2];
        i64 i = lo, j = hi;
        while (i <= j) {
            while (v[i] > pivot) i++;
            while (v[j] < pivot) j--;
            if (i <= j) {
                double t = v[i];
                v[i++] = v[j], v[j--] = t;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return v[want];
    }
    return v[want];
}

/* numpy's pairwise_sum for float64 (numpy/_core/src/umath/loops_utils.h.src) */
double numpy_sum(const double *v, i64 n) {
    if (n < 8) {
        double res = 0.;
        for (i64 i = 0; i < n; i++) res += v[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = v[j];
        i64 i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += v[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += v[i];
        return res;
    }
    i64 n2 = n / 2;
    n2 -= n2 % 8;
    return numpy_sum(v, n2) + numpy_sum(v + n2, n - n2);
}

/* ---- task table ------------------------------------------------------------------------------------ */
int cols_alloc(Arena *a, Cols *c, i64 n, i64 num_inputs, i64 num_sms) {
    c->n = n, c->num_sms = num_sms;
    i64 **cols[] = {&c->op, &c->seq, &c->q0, &c->qn, &c->kv0, &c->kv1, &c->final, &c->sm, &c->fan,
                    &c->in_off, &c->q_idx};
    for (size_t j = 0; j < sizeof cols / sizeof *cols; j++)
        if ((*cols[j] = ALLOC(a, i64, n)) == NULL) return E_NOMEM;
    c->in_idx = ALLOC(a, i64, num_inputs);
    c->q_len = ALLOC(a, i64, num_sms);
    c->start = ALLOC(a, double, n);
    c->end = ALLOC(a, double, n);
    return a->failed ? E_NOMEM : E_OK;
}
