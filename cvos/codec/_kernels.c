/*
 * The per-pixel loops of the compressed-domain reader, in C: one pass over the
 * pixels per representation instead of the many array passes numpy needs.
 * Conventions are coviar's (see cvos/codec/motion.py, which wraps these with
 * ctypes; ctypes releases the GIL while they run).
 *
 * Images are H x W x 3 uint8, vector fields H x W x 2 int32 (dx, dy) = dst - src,
 * residuals H x W x 3 int32, all C-contiguous.
 */
#include <stdint.h>
#include <string.h>

#define PY_SSIZE_T_CLEAN
#include <Python.h>

static int64_t max3(int64_t a, int64_t b, int64_t c)
{
    const int64_t ab = a > b ? a : b;
    return ab > c ? ab : c;
}

static int64_t min3(int64_t a, int64_t b, int64_t c)
{
    const int64_t ab = a < b ? a : b;
    return ab < c ? ab : c;
}

/* The pixels [x0, x1) x [y0, y1) a moving record paints and its displacement (dx, dy). */
typedef struct {
    int32_t dx, dy;
    int64_t x0, x1, y0, y1;
} Block;

/* Record `r`'s block, clipped so that destination and source are inside; 0 if it does not
 * move (coviar paints only moving blocks). */
static inline int moving_block(const int32_t *r, int64_t height, int64_t width, Block *block)
{
    block->dx = r[4] - r[2];
    block->dy = r[5] - r[3];
    if (block->dx == 0 && block->dy == 0)
        return 0;
    block->x0 = max3(r[4] - r[0] / 2, 0, block->dx);
    block->x1 = min3(r[4] + r[0] / 2, width, width + block->dx);
    block->y0 = max3(r[5] - r[1] / 2, 0, block->dy);
    block->y1 = min3(r[5] + r[1] / 2, height, height + block->dy);
    return 1;
}

/*
 * coviar's painting of FFmpeg's motion records. `records` is count x 6 int32:
 * (w, h, src_x, src_y, dst_x, dst_y), block centres in whole pixels. In record
 * order, a block that moves writes its (dx, dy) into each pixel dst + o, offsets
 * o in [-w/2, w/2) x [-h/2, h/2), whose destination and source (dst + o - d) are
 * both inside the frame. `vectors` must be zeroed by the caller.
 */
void paint_motion(const int32_t *restrict records, int64_t count, int64_t height,
                  int64_t width, int32_t *restrict vectors)
{
    Block b;
    for (int64_t i = 0; i < count; i++) {
        if (!moving_block(records + 6 * i, height, width, &b))
            continue;
        for (int64_t y = b.y0; y < b.y1; y++) {
            int32_t *row = vectors + 2 * (y * width);
            for (int64_t x = b.x0; x < b.x1; x++) {
                row[2 * x] = b.dx;
                row[2 * x + 1] = b.dy;
            }
        }
    }
}

/*
 * acc[p] = d[p] + previous[p - d[p]], d = the painting of `records` above (coviar's traced
 * source map: the displacement back to the I-frame through the previous frame), without
 * painting d: `accumulated` starts as `previous` (d = 0 where no moving block paints), then
 * each moving block, in record order, writes d + previous[p - d] over the pixels it would
 * paint (a later block overwrites an earlier one, as in the painting). Sources are inside the
 * frame by the painting's clipping. One copy and the moving blocks: most frames a training
 * stream decodes feed the accumulation alone, and their plain vectors are never painted.
 */
void accumulate_records(const int32_t *restrict records, int64_t count, int64_t height,
                        int64_t width, const int32_t *restrict previous,
                        int32_t *restrict accumulated)
{
    memcpy(accumulated, previous, sizeof(int32_t) * 2 * (size_t)(height * width));
    Block b;
    for (int64_t i = 0; i < count; i++) {
        if (!moving_block(records + 6 * i, height, width, &b))
            continue;
        for (int64_t y = b.y0; y < b.y1; y++) {
            const int32_t *source = previous + 2 * ((y - b.dy) * width - b.dx);
            int32_t *row = accumulated + 2 * (y * width);
            for (int64_t x = b.x0; x < b.x1; x++) {
                row[2 * x] = b.dx + source[2 * x];
                row[2 * x + 1] = b.dy + source[2 * x + 1];
            }
        }
    }
}

/* The (dx, dy) of pixel x as one 64-bit word: vectors compare in one step. */
static inline uint64_t pair_at(const int32_t *row, int64_t x)
{
    uint64_t pair;
    memcpy(&pair, row + 2 * x, sizeof pair);
    return pair;
}

/*
 * End of the run of pixels that share pixel x's vector, in one row of a vector
 * field. Motion is constant over blocks, so runs are long: the loops below then
 * copy whole runs, contiguous in memory, instead of gathering pixel by pixel.
 */
static inline int64_t run_end(const int32_t *row, int64_t x, int64_t width)
{
    const uint64_t first = pair_at(row, x);
    int64_t end = x + 1;
    /* runs are tens of pixels long: test four pixels per step, without branching */
    while (end + 4 <= width
           && ((pair_at(row, end) == first) & (pair_at(row, end + 1) == first)
               & (pair_at(row, end + 2) == first) & (pair_at(row, end + 3) == first)))
        end += 4;
    while (end < width && pair_at(row, end) == first)
        end++;
    return end;
}

/* Pixels [x, end) of row y, which share the vector (dx, dy). */
typedef struct {
    int64_t y, x, end;
    int32_t dx, dy;
} Run;

/*
 * Advance `run` to the next run of the field, row by row (start from a zeroed Run).
 * Returns 1 for a run, 0 past the last pixel, -1 if the run's sources are not all
 * inside the frame (vectors not painted by paint_motion).
 */
static inline int next_run(const int32_t *vectors, int64_t height, int64_t width, Run *run)
{
    if (run->end == width) {
        run->y++;
        run->end = 0;
    }
    if (run->y >= height)
        return 0;
    const int32_t *row = vectors + 2 * (run->y * width);
    run->x = run->end;
    run->end = run_end(row, run->x, width);
    run->dx = row[2 * run->x];
    run->dy = row[2 * run->x + 1];
    const int64_t source_y = run->y - run->dy;
    const int inside = run->x - run->dx >= 0 && run->end - run->dx <= width && source_y >= 0
                       && source_y < height;
    return inside ? 1 : -1;
}

/*
 * out[p] = image[p] - reference[p - d[p]] per channel: coviar's residual with the
 * plain vectors and the previous frame, or the accumulated vectors and the I-frame.
 * Returns 0, or -1 if a source lies outside the frame.
 */
int subtract_warped(const uint8_t *restrict image, const uint8_t *restrict reference,
                    const int32_t *restrict vectors, int64_t height, int64_t width,
                    int32_t *restrict out)
{
    Run run = {0};
    int status;
    while ((status = next_run(vectors, height, width, &run)) > 0) {
        const uint8_t *current = image + 3 * (run.y * width + run.x);
        const uint8_t *source = reference + 3 * ((run.y - run.dy) * width + run.x - run.dx);
        int32_t *target = out + 3 * (run.y * width + run.x);
        for (int64_t i = 0; i < 3 * (run.end - run.x); i++)
            target[i] = (int32_t)current[i] - (int32_t)source[i];
    }
    return status;
}

/*
 * subtract_warped at some pixels only: out[i, j] = image[p] - reference[p - d[p]] for
 * p = (rows[i], cols[j]), per channel; `out` is count_rows x count_cols x 3 int32. The rows
 * and columns must lie inside the frame. What a sampler that reads the residual at a grid of
 * pixels needs, without the full frame's residual. Returns 0, or -1 if a source lies outside.
 */
int subtract_warped_at(const uint8_t *restrict image, const uint8_t *restrict reference,
                       const int32_t *restrict vectors, int64_t height, int64_t width,
                       const int32_t *restrict rows, int64_t count_rows,
                       const int32_t *restrict cols, int64_t count_cols, int32_t *restrict out)
{
    for (int64_t i = 0; i < count_rows; i++) {
        const int64_t y = rows[i];
        const int32_t *row = vectors + 2 * (y * width);
        int32_t *target = out + 3 * (i * count_cols);
        for (int64_t j = 0; j < count_cols; j++) {
            const int64_t x = cols[j], sx = x - row[2 * x], sy = y - row[2 * x + 1];
            if (sx < 0 || sx >= width || sy < 0 || sy >= height)
                return -1;
            const uint8_t *current = image + 3 * (y * width + x);
            const uint8_t *source = reference + 3 * (sy * width + sx);
            for (int c = 0; c < 3; c++)
                target[3 * j + c] = (int32_t)current[c] - (int32_t)source[c];
        }
    }
    return 0;
}

/*
 * out[y, x] = labels[y - dy, x - dx], (dx, dy) = vectors[y, x]: a label map warped with
 * whole-pixel motion, exactly (mask propagation needs no interpolation). `labels` and
 * `out` are H x W uint8, C-contiguous; `vectors` is H x W x 2 int32 whose rows are
 * `row_stride` int32 apart (a crop of the coded frame). Sources outside the frame take
 * the nearest border pixel, as grid_sample's border padding.
 */
void warp_labels(const uint8_t *restrict labels, const int32_t *restrict vectors,
                 int64_t row_stride, int64_t height, int64_t width, uint8_t *restrict out)
{
    for (int64_t y = 0; y < height; y++) {
        const int32_t *row = vectors + y * row_stride;
        uint8_t *target = out + y * width;
        for (int64_t x = 0, end; x < width; x = end) {
            end = run_end(row, x, width);
            const int64_t dx = row[2 * x], sy = y - row[2 * x + 1];
            const uint8_t *source = labels + (sy < 0 ? 0 : sy >= height ? height - 1 : sy) * width;
            if (x - dx >= 0 && end - dx <= width) {
                memcpy(target + x, source + x - dx, (size_t)(end - x));
                continue;
            }
            for (int64_t i = x; i < end; i++) {
                const int64_t sx = i - dx;
                target[i] = source[sx < 0 ? 0 : sx >= width ? width - 1 : sx];
            }
        }
    }
}

/* An empty module, so that the shared library is also a valid Python extension. */
static struct PyModuleDef kernels_module = {PyModuleDef_HEAD_INIT, .m_name = "_kernels", .m_size = -1};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&kernels_module); }
