/* Shingle hashes from word hashes, and MinHash signatures from shingle hashes (operators/dedup.py,
 * `shingle_hashes` and `minhash_signatures`).
 *
 * shingles(words, word_offsets, ngram, out, offsets): document d's words are words[word_offsets[d] ..
 * word_offsets[d + 1]] (64-bit hashes); its shingles go to out[offsets[d] .. offsets[d + 1]], shingle i folding words
 * i .. i + ngram - 1 that lie in the document as h = fmix64(h * GOLDEN + w) from h = 0, stored as fmix64(h) >> 32:
 * exactly the NumPy expression it replaces. `offsets` holds max(L - ngram + 1, 1) shingles for L >= 1 words, 0 for none.
 *
 * signatures(shingles, offsets, a, b, out): document d's shingles are shingles[offsets[d] .. offsets[d + 1]]
 * (32-bit values in uint64), and out[d, p] = min over them of ((a[p] x + b[p]) mod 2^64) >> 32 as uint32:
 * Dietzfelbinger's multiply-add-shift, exactly the NumPy expression it replaces (uint64 arithmetic wraps).
 * A document without shingles keeps 0xFFFFFFFF. The GIL is released while it runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static PyObject *signatures(PyObject *self, PyObject *args) {
    Py_buffer sh, off, a, b, out;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*", &sh, &off, &a, &b, &out)) return NULL;
    int64_t m = sh.len / 8, n = off.len / 8 - 1, P = a.len / 8;
    const uint64_t *x = sh.buf, *A = a.buf, *B = b.buf;
    const int64_t *o = off.buf;
    uint32_t *sig = out.buf;
    int ok = n >= 0 && b.len == a.len && out.len == n * P * 4 && (n == 0 || (o[0] >= 0 && o[n] <= m));
    for (int64_t d = 0; ok && d < n; d++) ok = o[d + 1] >= o[d];
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        for (int64_t d = 0; d < n; d++) {
            uint32_t *row = sig + d * P;
            for (int64_t p = 0; p < P; p++) row[p] = 0xFFFFFFFFu;
            for (int64_t s = o[d]; s < o[d + 1]; s++) {
                uint64_t v = x[s];
                for (int64_t p = 0; p < P; p++) {
                    uint32_t h = (uint32_t)((A[p] * v + B[p]) >> 32);
                    row[p] = h < row[p] ? h : row[p];
                }
            }
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&sh);
    PyBuffer_Release(&off);
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    PyBuffer_Release(&out);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "signatures: inconsistent buffer sizes");
        return NULL;
    }
    Py_RETURN_NONE;
}

static inline uint64_t fmix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 33);
}

static PyObject *shingles(PyObject *self, PyObject *args) {
    Py_buffer w, wo, out, off;
    Py_ssize_t ngram;
    if (!PyArg_ParseTuple(args, "y*y*nw*y*", &w, &wo, &ngram, &out, &off)) return NULL;
    int64_t m = w.len / 8, n = wo.len / 8 - 1, total = out.len / 8;
    const uint64_t *words = w.buf;
    const int64_t *ws = wo.buf, *o = off.buf;
    uint64_t *sh = out.buf;
    int ok = ngram >= 1 && n >= 0 && off.len == wo.len && (n == 0 || (ws[0] >= 0 && ws[n] <= m && o[0] == 0 && o[n] == total));
    for (int64_t d = 0; ok && d < n; d++) {
        int64_t len = ws[d + 1] - ws[d], want = len > 0 ? (len - ngram + 1 > 1 ? len - ngram + 1 : 1) : 0;
        ok = len >= 0 && o[d + 1] - o[d] == want;
    }
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        for (int64_t d = 0; d < n; d++) {
            int64_t end = ws[d + 1];
            for (int64_t i = 0; i < o[d + 1] - o[d]; i++) {
                uint64_t h = 0;
                for (int64_t j = ws[d] + i; j < ws[d] + i + ngram && j < end; j++) h = fmix64(h * 0x9E3779B97F4A7C15ull + words[j]);
                sh[o[d] + i] = fmix64(h) >> 32;
            }
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&w);
    PyBuffer_Release(&wo);
    PyBuffer_Release(&out);
    PyBuffer_Release(&off);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "shingles: inconsistent buffer sizes");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"shingles", shingles, METH_VARARGS,
     "shingles(words, word_offsets, ngram, out, offsets)\n\nEach document's word n-gram hashes (uint64 holding 32 "
     "bits) from its word hashes."},
    {"signatures", signatures, METH_VARARGS,
     "signatures(shingles, offsets, a, b, out)\n\nMinHash signatures (documents x permutations, uint32) by "
     "multiply-add-shift hashing of each document's shingle hashes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "minhash_kernel", "Shingle hashes and MinHash signatures.",
                                    -1, methods};

PyMODINIT_FUNC PyInit_minhash_kernel(void) { return PyModule_Create(&module); }
