/*
 * The one word of a batch segment's header that two processes write (cvos/data/transport.py),
 * read and written with atomic operations, loaded with ctypes.
 *
 * A loader worker stores a ticket in the word when it packs a batch into the segment; the main
 * process stores 0 there (hands the segment back) once it has copied the batch out. The
 * hand-back is a release and the worker's read an acquire, so every read of the batch in the
 * main process happens before the worker writes the next batch into the same memory, on
 * processors that reorder memory accesses (ARM) as on those that do not (x86).
 */
#include <stdint.h>

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* the word, read before the segment's memory is written again */
int64_t segment_word(const int64_t *word) { return __atomic_load_n(word, __ATOMIC_ACQUIRE); }

/* a worker's claim on a segment it read free */
void segment_claim(int64_t *word, int64_t ticket) { __atomic_store_n(word, ticket, __ATOMIC_RELAXED); }

/* 0 where the word still holds `ticket` (1), else nothing (0): a batch hands back its own claim
 * alone, never a later batch's in the same segment */
int segment_hand_back(int64_t *word, int64_t ticket)
{
    return __atomic_compare_exchange_n(word, &ticket, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
}

/* An empty module, so that the shared library is also a valid Python extension. */
static struct PyModuleDef segments_module = {PyModuleDef_HEAD_INIT, .m_name = "_segments", .m_size = -1};

PyMODINIT_FUNC PyInit__segments(void) { return PyModule_Create(&segments_module); }
