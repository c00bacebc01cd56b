/* Repetition scans of the heuristic rules, over Arrow string buffers (see operators/rulescan.py).
 *
 * Each function walks documents one at a time: a document's items (lines, paragraphs, words) are byte spans
 * of one UTF-8 buffer, `offsets[k] .. offsets[k + 1]`, and document d holds items `groups[d] .. groups[d + 1]`.
 * Items are compared exactly (a 64-bit hash finds candidates, the bytes decide), so the counts equal those of
 * Python sets and Counters over the same strings. The GIL is released while a function scans.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t *key;  /* hash of the item */
    int64_t *first; /* item (or n-gram start) that filled the slot, -1 when empty */
    int64_t *count;
    int64_t cap;    /* a power of two */
} table_t;

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_bytes(const uint8_t *p, int64_t n) {
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)n;
    for (int64_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return mix64(h);
}

static inline int64_t utf8_chars(const uint8_t *p, int64_t n) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++) c += (p[i] & 0xC0) != 0x80;
    return c;
}

/* Empty the table and make room for `items` entries at a load of at most one half. */
static int table_reset(table_t *t, int64_t items) {
    int64_t cap = 16;
    while (cap < 2 * items) cap <<= 1;
    if (cap > t->cap) {
        free(t->key);
        free(t->first);
        free(t->count);
        t->key = malloc(cap * sizeof(uint64_t));
        t->first = malloc(cap * sizeof(int64_t));
        t->count = malloc(cap * sizeof(int64_t));
        t->cap = cap;
        if (!t->key || !t->first || !t->count) return -1;
    }
    memset(t->first, 0xff, cap * sizeof(int64_t));
    t->cap = cap;
    return 0;
}

static void table_free(table_t *t) {
    free(t->key);
    free(t->first);
    free(t->count);
}

static inline int span_eq(const uint8_t *data, const int64_t *off, int64_t a, int64_t b, int64_t words) {
    /* words consecutive items starting at a and at b, item by item */
    for (int64_t w = 0; w < words; w++) {
        int64_t la = off[a + w + 1] - off[a + w], lb = off[b + w + 1] - off[b + w];
        if (la != lb || memcmp(data + off[a + w], data + off[b + w], la) != 0) return 0;
    }
    return 1;
}

static inline int bytes_eq(const uint8_t *data, int64_t s1, int64_t e1, int64_t s2, int64_t e2) {
    return e1 - s1 == e2 - s2 && memcmp(data + s1, data + s2, e1 - s1) == 0;
}

/* The slot holding an entry equal to item `at` (of `words` items), or the empty slot where it goes.
 * concat: compare the items' bytes joined without a separator, else item by item. */
static inline int64_t table_find(const table_t *t, uint64_t h, const uint8_t *data, const int64_t *off, int64_t at,
                                 int64_t words, int concat) {
    int64_t mask = t->cap - 1, s = (int64_t)(h & (uint64_t)mask);
    while (t->first[s] >= 0) {
        if (t->key[s] == h) {
            int64_t f = t->first[s];
            if (concat ? bytes_eq(data, off[f], off[f + words], off[at], off[at + words])
                       : span_eq(data, off, f, at, words))
                return s;
        }
        s = (s + 1) & mask;
    }
    return s;
}

typedef struct {
    Py_buffer data, offsets, groups;
} spans_t;

static int get_spans(PyObject *args, spans_t *s, Py_buffer *extra, int n_extra, const char *fmt) {
    memset(s, 0, sizeof(*s));
    switch (n_extra) {
    case 2:
        return PyArg_ParseTuple(args, fmt, &s->data, &s->offsets, &s->groups, &extra[0], &extra[1]);
    case 4:
        return PyArg_ParseTuple(args, fmt, &s->data, &s->offsets, &s->groups, &extra[0], &extra[1], &extra[2],
                                &extra[3]);
    }
    return 0;
}

static void release(spans_t *s, Py_buffer *extra, int n_extra) {
    PyBuffer_Release(&s->data);
    PyBuffer_Release(&s->offsets);
    PyBuffer_Release(&s->groups);
    for (int i = 0; i < n_extra; i++) PyBuffer_Release(&extra[i]);
}

static int check_sizes(const spans_t *s, int64_t n_docs) {
    int64_t n_off = s->offsets.len / 8, n_groups = s->groups.len / 8;
    if (n_groups != n_docs + 1 || n_off < 1) return 0;
    const int64_t *off = s->offsets.buf, *g = s->groups.buf;
    if (g[0] < 0 || g[n_docs] > n_off - 1) return 0;
    for (int64_t d = 0; d < n_docs; d++)
        if (g[d + 1] < g[d]) return 0;
    for (int64_t k = 0; k + 1 < n_off; k++)
        if (off[k + 1] < off[k]) return 0;
    return off[0] >= 0 && off[n_off - 1] <= s->data.len;
}

PyDoc_STRVAR(duplicates_doc,
             "duplicates(data, offsets, groups, out_n, out_chars)\n\n"
             "Per document: the items equal to an earlier item of the same document, and their characters.");

static PyObject *duplicates(PyObject *self, PyObject *args) {
    spans_t s;
    Py_buffer out[2];
    if (!get_spans(args, &s, out, 2, "y*y*y*w*w*")) return NULL;
    int64_t n_docs = out[0].len / 8;
    if (out[1].len / 8 != n_docs || !check_sizes(&s, n_docs)) {
        release(&s, out, 2);
        PyErr_SetString(PyExc_ValueError, "duplicates: inconsistent buffer sizes");
        return NULL;
    }
    const uint8_t *data = s.data.buf;
    const int64_t *off = s.offsets.buf, *g = s.groups.buf;
    int64_t *out_n = out[0].buf, *out_chars = out[1].buf;
    table_t t = {0};
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t d = 0; d < n_docs && !failed; d++) {
        int64_t n = 0, chars = 0;
        if (table_reset(&t, g[d + 1] - g[d]) < 0) {
            failed = 1;
            break;
        }
        for (int64_t k = g[d]; k < g[d + 1]; k++) {
            uint64_t h = hash_bytes(data + off[k], off[k + 1] - off[k]);
            int64_t slot = table_find(&t, h, data, off, k, 1, 0);
            if (t.first[slot] >= 0) {
                n++;
                chars += utf8_chars(data + off[k], off[k + 1] - off[k]);
            } else {
                t.key[slot] = h;
                t.first[slot] = k;
            }
        }
        out_n[d] = n;
        out_chars[d] = chars;
    }
    Py_END_ALLOW_THREADS
    table_free(&t);
    release(&s, out, 2);
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(ngrams_doc,
             "ngrams(words, offsets, groups, top_ns, dup_ns, out_top, out_dup)\n\n"
             "Per document of words, for each n of top_ns: characters of the most frequent n-gram (words joined by\n"
             "spaces) times its count, the first such n-gram on a tie, -1 when the document has fewer than n words;\n"
             "for each n of dup_ns: the characters of the duplicated n-grams (words joined without a separator)\n"
             "that datatrove's greedy scan counts: a repeated n-gram is counted and the scan jumps past it.\n"
             "out_top and out_dup are documents x len(ns), row-major.");

static PyObject *ngrams(PyObject *self, PyObject *args) {
    spans_t s;
    Py_buffer b[4]; /* top_ns, dup_ns, out_top, out_dup */
    if (!get_spans(args, &s, b, 4, "y*y*y*y*y*w*w*")) return NULL;
    int64_t n_top = b[0].len / 8, n_dup = b[1].len / 8, n_docs = (s.groups.len / 8) - 1;
    const int64_t *top_ns = b[0].buf, *dup_ns = b[1].buf;
    int ok = n_docs >= 0 && b[2].len / 8 == n_docs * n_top && b[3].len / 8 == n_docs * n_dup && check_sizes(&s, n_docs);
    for (int64_t i = 0; ok && i < n_top; i++) ok = top_ns[i] >= 1;
    for (int64_t i = 0; ok && i < n_dup; i++) ok = dup_ns[i] >= 1;
    if (!ok) {
        release(&s, b, 4);
        PyErr_SetString(PyExc_ValueError, "ngrams: inconsistent buffer sizes or an n below 1");
        return NULL;
    }
    const uint8_t *data = s.data.buf;
    const int64_t *off = s.offsets.buf, *g = s.groups.buf;
    int64_t *out_top = b[2].buf, *out_dup = b[3].buf;
    table_t t = {0};
    int64_t max_words = 0, max_bytes = 0;
    for (int64_t d = 0; d < n_docs; d++) {
        if (g[d + 1] - g[d] > max_words) max_words = g[d + 1] - g[d];
        if (off[g[d + 1]] - off[g[d]] > max_bytes) max_bytes = off[g[d + 1]] - off[g[d]];
    }
    /* per document: word hashes, characters before each word, and the byte prefix hashes with their powers */
    uint64_t *wh = malloc((max_words + 1) * sizeof(uint64_t));
    int64_t *cc = malloc((max_words + 1) * sizeof(int64_t));
    uint64_t *ph = malloc((max_bytes + 1) * sizeof(uint64_t));
    uint64_t *pw = malloc((max_bytes + 1) * sizeof(uint64_t));
    int failed = !wh || !cc || !ph || !pw;
    const uint64_t P = 0x100000001b3ULL;
    Py_BEGIN_ALLOW_THREADS
    if (!failed) {
        pw[0] = 1;
        for (int64_t i = 1; i <= max_bytes; i++) pw[i] = pw[i - 1] * P;
    }
    for (int64_t d = 0; d < n_docs && !failed; d++) {
        int64_t a = g[d], L = g[d + 1] - a, base = off[a];
        cc[0] = 0;
        for (int64_t i = 0; i < L; i++) {
            int64_t len = off[a + i + 1] - off[a + i];
            wh[i] = hash_bytes(data + off[a + i], len);
            cc[i + 1] = cc[i] + utf8_chars(data + off[a + i], len);
        }
        ph[0] = 0;
        for (int64_t i = 0; i < off[a + L] - base; i++) ph[i + 1] = ph[i] * P + data[base + i] + 1;
        for (int64_t j = 0; j < n_top; j++) {
            int64_t n = top_ns[j], best = -1, best_count = 0;
            if (L < n) {
                out_top[d * n_top + j] = -1;
                continue;
            }
            if (table_reset(&t, L - n + 1) < 0) {
                failed = 1;
                break;
            }
            for (int64_t i = 0; i + n <= L; i++) {
                uint64_t h = (uint64_t)n;
                for (int64_t w = 0; w < n; w++) h = mix64(h ^ wh[i + w]);
                int64_t slot = table_find(&t, h, data, off, a + i, n, 0);
                if (t.first[slot] < 0) {
                    t.key[slot] = h;
                    t.first[slot] = a + i;
                    t.count[slot] = 0;
                }
                int64_t c = ++t.count[slot];
                /* the most frequent, and of those the first to occur (Counter.most_common) */
                if (c > best_count || (c == best_count && t.first[slot] - a < best)) {
                    best_count = c;
                    best = t.first[slot] - a;
                }
            }
            out_top[d * n_top + j] = best_count * (cc[best + n] - cc[best] + n - 1);
        }
        for (int64_t j = 0; j < n_dup && !failed; j++) {
            int64_t n = dup_ns[j], dup = 0, i = 0;
            if (table_reset(&t, L) < 0) {
                failed = 1;
                break;
            }
            while (i + n <= L) {
                int64_t s0 = off[a + i] - base, e0 = off[a + i + n] - base;
                uint64_t h = mix64(ph[e0] - ph[s0] * pw[e0 - s0]);
                int64_t slot = table_find(&t, h, data, off, a + i, n, 1);
                if (t.first[slot] >= 0) {
                    dup += cc[i + n] - cc[i];
                    i += n;
                } else {
                    t.key[slot] = h;
                    t.first[slot] = a + i;
                    i += 1;
                }
            }
            out_dup[d * n_dup + j] = dup;
        }
    }
    Py_END_ALLOW_THREADS
    free(wh);
    free(cc);
    free(ph);
    free(pw);
    table_free(&t);
    release(&s, b, 4);
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"duplicates", duplicates, METH_VARARGS, duplicates_doc},
    {"ngrams", ngrams, METH_VARARGS, ngrams_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "rulescan_kernels", "Repetition scans of the heuristic rules.", -1,
                                    methods};

PyMODINIT_FUNC PyInit_rulescan_kernels(void) { return PyModule_Create(&module); }
