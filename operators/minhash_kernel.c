/* MinHash signatures from shingle hashes (see operators/dedup.py, `minhash_signatures`).
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

static PyMethodDef methods[] = {
    {"signatures", signatures, METH_VARARGS,
     "signatures(shingles, offsets, a, b, out)\n\nMinHash signatures (documents x permutations, uint32) by "
     "multiply-add-shift hashing of each document's shingle hashes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "minhash_kernel", "MinHash signatures from shingle hashes.",
                                    -1, methods};

PyMODINIT_FUNC PyInit_minhash_kernel(void) { return PyModule_Create(&module); }
