/*
 * Loops of the network's fixed (not learned) steps that torch spreads over many small ops, in C,
 * loaded with ctypes (which releases the GIL while they run): inference matching's top-k mean
 * and the decoder's boundary band.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * The top-k mean (cvos/models/matching.py). Every target cell averages its k largest cosine
 * similarities to a bank of a hundred-odd reference cells; torch's topk spends about a
 * microsecond a row on that, a tenth of a light P-frame step.
 *
 * Similarities come bank-major (N x M: row n holds reference n's similarity to every cell), so
 * LANES neighbouring cells are neighbouring floats: each keeps its k largest values sorted in
 * one column of a k x LANES table, and a new value sinks through the column by max/min
 * exchanges, branch-free and vectorised across the cells.
 */
#define LANES 64 /* cells per block: several vector registers of independent work per exchange */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

#define INLINE static inline __attribute__((always_inline)) /* into each clone's own target */

/*
 * best (kept x LANES) holds each lane's largest values, descending down its column; `values`
 * (LANES) is one new value per lane: each sinks to its place, the smallest falls off.
 */
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

/*
 * The boundary band (cvos/models/decoder.py): out[y, x] = 1 where the (2 radius + 1) square
 * around (y, x), clipped to the image, holds both foreground (prior > 0.5) and background
 * pixels, else 0: dilation minus erosion, with outside the image counting as neither. Counts
 * slide along columns then rows, a few operations a pixel whatever the radius (torch needs two
 * summed-area tables, a dozen passes over the image).
 *
 * `prior` is images x height x width float32 whose rows lie `row_stride` floats apart (a
 * window of a larger map) and images `image_stride` apart; `out` is contiguous. `counts` holds
 * width ints.
 */
void boundary_band(const float *restrict prior, int64_t images, int64_t image_stride,
                   int64_t row_stride, int64_t height, int64_t width, int64_t radius,
                   int32_t *restrict counts, float *restrict out)
{
    for (int64_t n = 0; n < images; n++) {
        const float *image = prior + n * image_stride;
        float *target = out + n * height * width;
        memset(counts, 0, (size_t)width * sizeof(int32_t));
        for (int64_t y = 0; y < radius && y < height; y++) /* rows [0, radius) enter first */
            for (int64_t x = 0; x < width; x++)
                counts[x] += image[y * row_stride + x] > 0.5f;
        for (int64_t y = 0; y < height; y++) {
            const int64_t enter = y + radius, leave = y - radius - 1;
            if (enter < height)
                for (int64_t x = 0; x < width; x++)
                    counts[x] += image[enter * row_stride + x] > 0.5f;
            if (leave >= 0)
                for (int64_t x = 0; x < width; x++)
                    counts[x] -= image[leave * row_stride + x] > 0.5f;
            const int64_t top = y - radius < 0 ? 0 : y - radius;
            const int64_t rows = (enter < height ? enter : height - 1) - top + 1;
            int64_t inside = 0; /* foreground pixels in the square around (y, x) */
            for (int64_t x = 0; x < radius && x < width; x++)
                inside += counts[x];
            for (int64_t x = 0; x < width; x++) {
                if (x + radius < width)
                    inside += counts[x + radius];
                if (x - radius - 1 >= 0)
                    inside -= counts[x - radius - 1];
                const int64_t left = x - radius < 0 ? 0 : x - radius;
                const int64_t right = x + radius < width ? x + radius : width - 1;
                const int64_t pixels = rows * (right - left + 1);
                target[y * width + x] = inside > 0 && inside < pixels ? 1.0f : 0.0f;
            }
        }
    }
}
