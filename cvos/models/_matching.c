/*
 * The top-k mean of inference matching (cvos/models/matching.py), in C, loaded with ctypes
 * (which releases the GIL while it runs). Every target cell averages its k largest cosine
 * similarities to a bank of a hundred-odd reference cells; torch's topk spends about a
 * microsecond a row on that, a tenth of a light P-frame step.
 *
 * Similarities come bank-major (N x M: row n holds reference n's similarity to every cell), so
 * LANES neighbouring cells are neighbouring floats: each keeps its k largest values sorted in
 * one column of a k x LANES table, and a new value sinks through the column by max/min
 * exchanges, branch-free and vectorised across the cells.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANES 64 /* cells per block: several vector registers of independent work per exchange */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/*
 * best (kept x LANES) holds each lane's largest values, descending down its column; `values`
 * (LANES) is one new value per lane: each sinks to its place, the smallest falls off.
 */
#define INLINE static inline __attribute__((always_inline)) /* into each clone's own target */

INLINE void sink(float *restrict best, int64_t kept, const float *restrict values)
{
    float v[LANES];
    memcpy(v, values, sizeof v);
    for (int64_t j = 0; j < kept; j++) {
        float *row = best + j * LANES;
        for (int l = 0; l < LANES; l++) {
            const float high = row[l] > v[l] ? row[l] : v[l];
            v[l] = row[l] > v[l] ? v[l] : row[l];
            row[l] = high;
        }
    }
}

/* The means of one block of LANES cells starting at `block` (a pointer into row 0). */
INLINE void block_means(const float *restrict block, int64_t cells, const int64_t *starts,
                        const int64_t *stops, int64_t ranges, int64_t kept,
                        float *restrict best, float *restrict out)
{
    for (int64_t i = 0; i < kept * LANES; i++)
        best[i] = -INFINITY;
    for (int64_t r = 0; r < ranges; r++)
        for (int64_t n = starts[r]; n < stops[r]; n++)
            sink(best, kept, block + n * cells);
    for (int l = 0; l < LANES; l++) {
        double total = 0.0;
        for (int64_t j = 0; j < kept; j++)
            total += best[j * LANES + l];
        out[l] = (float)(total / (double)kept);
    }
}

/*
 * out[m] = the mean of the k largest of sim[n, m] over the rows n in [starts[r], stops[r]),
 * r < ranges (of all of them when they are fewer than k), or `empty` when the ranges hold no
 * row. `sim` is N x M float32, C-contiguous, M >= LANES (callers pad narrower maps);
 * `scratch` holds k x LANES floats. Cells past the last whole block are computed by a block
 * that overlaps the one before (each cell's mean depends on its own column only).
 */
VECTOR_CLONES
void topk_mean_rows(const float *restrict sim, int64_t cells, const int64_t *starts,
                    const int64_t *stops, int64_t ranges, int64_t k, float empty,
                    float *restrict scratch, float *restrict out)
{
    int64_t n = 0;
    for (int64_t r = 0; r < ranges; r++)
        n += stops[r] - starts[r];
    if (n == 0) {
        for (int64_t m = 0; m < cells; m++)
            out[m] = empty;
        return;
    }
    const int64_t kept = k < n ? k : n;
    for (int64_t m = 0;; m += LANES) {
        const int64_t first = m + LANES <= cells ? m : cells - LANES;
        block_means(sim + first, cells, starts, stops, ranges, kept, scratch, out + first);
        if (first + LANES >= cells)
            break;
    }
}

/* The block width callers must pad the cell count to (at least). */
int64_t topk_lanes(void)
{
    return LANES;
}
