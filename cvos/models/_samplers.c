/*
 * The network-input samplers of cvos/models/geometry.py, in C, loaded with ctypes (which
 * releases the GIL while they run). Where a map has no rotation, a sample reads rows and
 * columns of the frame that a table per axis gives, and these loops read the frame's own
 * integers in place: no float copy of a 480p frame per image, no per-pixel index arrays.
 */
#include <stdint.h>

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/*
 * For maps without rotation, where output row y reads input rows that depend on y alone and
 * output column x input columns that depend on x alone (a resize, a flip, a zoom, a crop).
 * `array` points at pixel (0, 0) of an H x W x C array whose rows, pixels and channels lie
 * `row_stride`, `pixel_stride` and `channel_stride` elements apart (a crop or a reversed
 * channel order is a view). `out` is C x h x w float32; `inside` (h x w, 0 or 1, or NULL
 * for all 1) multiplies every value, as numpy's and torch's float * bool do (a negative
 * value outside becomes -0).
 */

/*
 * Nearest pixel: out[c, y, x] = array[rows[y], cols[x], c]. The body is inlined with the
 * channel count as a constant for 1, 2 and 3 channels (the compiler then unrolls the
 * channel loop: three times faster than a loop over a count it does not know).
 */
#define GATHER_NEAREST(NAME, TYPE)                                                           \
    static inline __attribute__((always_inline)) void NAME##_body(                           \
        const TYPE *restrict array, int64_t row_stride, int64_t pixel_stride,                \
        int64_t channel_stride, const int64_t channels, const int32_t *restrict rows,        \
        int64_t height, const int32_t *restrict cols, int64_t width,                         \
        const uint8_t *restrict inside, float *restrict out)                                 \
    {                                                                                        \
        const int64_t plane = height * width;                                                \
        for (int64_t y = 0; y < height; y++) {                                               \
            const TYPE *row = array + rows[y] * row_stride;                                  \
            float *target = out + y * width;                                                 \
            for (int64_t x = 0; x < width; x++) {                                            \
                const TYPE *pixel = row + cols[x] * pixel_stride;                            \
                for (int64_t c = 0; c < channels; c++)                                       \
                    target[c * plane + x] = (float)pixel[c * channel_stride];                \
            }                                                                                \
            if (inside == NULL)                                                              \
                continue;                                                                    \
            for (int64_t c = 0; c < channels; c++)                                           \
                for (int64_t x = 0; x < width; x++)                                          \
                    target[c * plane + x] *= (float)inside[y * width + x];                   \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    void NAME(const TYPE *restrict array, int64_t row_stride, int64_t pixel_stride,          \
              int64_t channel_stride, int64_t channels, const int32_t *restrict rows,        \
              int64_t height, const int32_t *restrict cols, int64_t width,                   \
              const uint8_t *restrict inside, float *restrict out)                           \
    {                                                                                        \
        switch (channels) {                                                                  \
        case 1:                                                                              \
            NAME##_body(array, row_stride, pixel_stride, channel_stride, 1, rows, height,    \
                        cols, width, inside, out);                                           \
            break;                                                                           \
        case 2:                                                                              \
            NAME##_body(array, row_stride, pixel_stride, channel_stride, 2, rows, height,    \
                        cols, width, inside, out);                                           \
            break;                                                                           \
        case 3:                                                                              \
            NAME##_body(array, row_stride, pixel_stride, channel_stride, 3, rows, height,    \
                        cols, width, inside, out);                                           \
            break;                                                                           \
        default:                                                                             \
            NAME##_body(array, row_stride, pixel_stride, channel_stride, channels, rows,     \
                        height, cols, width, inside, out);                                   \
        }                                                                                    \
    }

GATHER_NEAREST(gather_nearest_u8, uint8_t)
GATHER_NEAREST(gather_nearest_i16, int16_t)
GATHER_NEAREST(gather_nearest_i32, int32_t)

/*
 * Bilinear, with exactly the arithmetic of ATen's vectorised CPU grid_sample: corner weights
 * nw = s * e, ne = s * w, sw = n * e, se = n * w, then out = v_nw * nw, + v_ne * ne,
 * + v_sw * sw, + v_se * se, each rounded to float32 in that order. The caller computes, as
 * grid_sample does, each output row's north and south input rows (rows: 2 x h) with their
 * weights (s, n: 2 x h), and each column's west and east ones (cols, weights e, w: 2 x w);
 * a corner past the array's edge is clamped into it and has weight 0. ATen's AVX2 and
 * AVX-512 kernels contract the sum into fused multiply-adds, its plain C++ kernel does not:
 * `fused` picks which one to match.
 */
#define BILINEAR_LOOP(COMBINE, CHANNELS)                                                     \
    const int64_t plane = height * width;                                                    \
    for (int64_t y = 0; y < height; y++) {                                                   \
        const uint8_t *north = array + rows[y] * row_stride;                                 \
        const uint8_t *south = array + rows[height + y] * row_stride;                        \
        const float s = row_weights[y], n = row_weights[height + y];                         \
        float *target = out + y * width;                                                     \
        for (int64_t x = 0; x < width; x++) {                                                \
            const int64_t west = cols[x] * pixel_stride, east = cols[width + x] * pixel_stride; \
            const float e = col_weights[x], w = col_weights[width + x];                      \
            const float nw = s * e, ne = s * w, sw = n * e, se = n * w;                      \
            for (int64_t c = 0; c < (CHANNELS); c++) {                                       \
                const int64_t channel = c * channel_stride;                                  \
                float value = (float)north[west + channel] * nw;                             \
                value = COMBINE((float)north[east + channel], ne, value);                    \
                value = COMBINE((float)south[west + channel], sw, value);                    \
                value = COMBINE((float)south[east + channel], se, value);                    \
                target[c * plane + x] = value;                                               \
            }                                                                                \
        }                                                                                    \
        if (inside == NULL)                                                                  \
            continue;                                                                        \
        for (int64_t c = 0; c < (CHANNELS); c++)                                             \
            for (int64_t x = 0; x < width; x++)                                              \
                target[c * plane + x] *= (float)inside[y * width + x];                       \
    }

/* the loop with the channel count as a constant for 1, 2 and 3 channels (unrolled) */
#define BILINEAR_BODY(COMBINE)                                                               \
    switch (channels) {                                                                      \
    case 1: {                                                                                \
        BILINEAR_LOOP(COMBINE, 1)                                                            \
        break;                                                                               \
    }                                                                                        \
    case 2: {                                                                                \
        BILINEAR_LOOP(COMBINE, 2)                                                            \
        break;                                                                               \
    }                                                                                        \
    case 3: {                                                                                \
        BILINEAR_LOOP(COMBINE, 3)                                                            \
        break;                                                                               \
    }                                                                                        \
    default: {                                                                               \
        BILINEAR_LOOP(COMBINE, channels)                                                     \
    }                                                                                        \
    }

#define BILINEAR_ARGS                                                                        \
    const uint8_t *restrict array, int64_t row_stride, int64_t pixel_stride,                 \
        int64_t channel_stride, int64_t channels, const int32_t *restrict rows,              \
        const float *restrict row_weights, int64_t height, const int32_t *restrict cols,     \
        const float *restrict col_weights, int64_t width, const uint8_t *restrict inside,    \
        float *restrict out

#define BILINEAR_CALL                                                                        \
    array, row_stride, pixel_stride, channel_stride, channels, rows, row_weights, height,    \
        cols, col_weights, width, inside, out

#define MUL_ADD(a, b, c) ((a) * (b) + (c))
#define FUSED(a, b, c) __builtin_fmaf((a), (b), (c))

#if defined(__x86_64__) || defined(__i386__)
#define FMA_TARGET __attribute__((target("fma")))
#else
#define FMA_TARGET
#endif

/* GCC would otherwise contract MUL_ADD where the build targets FMA (-march=native) */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
static void bilinear_plain(BILINEAR_ARGS)
{
    BILINEAR_BODY(MUL_ADD)
}

FMA_TARGET static void bilinear_fused(BILINEAR_ARGS)
{
    BILINEAR_BODY(FUSED)
}

#if defined(__x86_64__)
#include <immintrin.h>

/*
 * bilinear_fused, 8 output pixels at a time, for 1-channel arrays, 2-channel ones whose pixels
 * are 2 adjacent bytes (two masks) and 3-channel ones whose pixels are 3 adjacent bytes (RGB,
 * or BGR read backwards: channel_stride -1): one 4-byte gather per corner brings every
 * channel, and each lane does the scalar loop's operations in its order. A gather reads up to 3 bytes past a pixel, which exist unless the pixel ends the
 * last row: rows whose south neighbour is the region's last (`region_height` - 1) run the
 * scalar loop.
 */
__attribute__((target("avx2,fma"))) static void bilinear_bytes_avx2(BILINEAR_ARGS,
                                                                    int64_t region_height)
{
    const int64_t plane = height * width;
    const int reversed = channels > 1 && channel_stride < 0;
    const uint8_t *first = reversed ? array - (channels - 1) : array; /* byte 0 of pixel 0 */
    int bytes_of[3];
    for (int c = 0; c < channels; c++)
        bytes_of[c] = reversed ? (int)channels - 1 - c : c;
    const __m256i low_byte = _mm256_set1_epi32(0xff);
    const __m256i step = _mm256_set1_epi32((int)pixel_stride);
    for (int64_t y = 0; y < height; y++) {
        const uint8_t *north = first + rows[y] * row_stride;
        const uint8_t *south = first + rows[height + y] * row_stride;
        const float s = row_weights[y], n = row_weights[height + y];
        const __m256 s8 = _mm256_set1_ps(s), n8 = _mm256_set1_ps(n);
        float *target = out + y * width;
        int64_t x = 0;
        for (; rows[height + y] < region_height - 1 && x + 8 <= width; x += 8) {
            const __m256i west = _mm256_mullo_epi32(
                _mm256_loadu_si256((const __m256i *)(cols + x)), step);
            const __m256i east = _mm256_mullo_epi32(
                _mm256_loadu_si256((const __m256i *)(cols + width + x)), step);
            const __m256 e = _mm256_loadu_ps(col_weights + x);
            const __m256 w = _mm256_loadu_ps(col_weights + width + x);
            const __m256 nw = _mm256_mul_ps(s8, e), ne = _mm256_mul_ps(s8, w);
            const __m256 sw = _mm256_mul_ps(n8, e), se = _mm256_mul_ps(n8, w);
            const __m256i g_nw = _mm256_i32gather_epi32((const int *)north, west, 1);
            const __m256i g_ne = _mm256_i32gather_epi32((const int *)north, east, 1);
            const __m256i g_sw = _mm256_i32gather_epi32((const int *)south, west, 1);
            const __m256i g_se = _mm256_i32gather_epi32((const int *)south, east, 1);
            for (int c = 0; c < channels; c++) {
                const __m128i shift = _mm_cvtsi32_si128(8 * bytes_of[c]);
#define CHANNEL(g) _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32((g), shift), low_byte))
                __m256 value = _mm256_mul_ps(CHANNEL(g_nw), nw);
                value = _mm256_fmadd_ps(CHANNEL(g_ne), ne, value);
                value = _mm256_fmadd_ps(CHANNEL(g_sw), sw, value);
                value = _mm256_fmadd_ps(CHANNEL(g_se), se, value);
#undef CHANNEL
                _mm256_storeu_ps(target + c * plane + x, value);
            }
        }
        for (; x < width; x++) {
            const int64_t west = cols[x] * pixel_stride, east = cols[width + x] * pixel_stride;
            const float e = col_weights[x], w = col_weights[width + x];
            const float nw = s * e, ne = s * w, sw = n * e, se = n * w;
            for (int c = 0; c < channels; c++) {
                const int byte = bytes_of[c];
                float value = (float)north[west + byte] * nw;
                value = __builtin_fmaf((float)north[east + byte], ne, value);
                value = __builtin_fmaf((float)south[west + byte], sw, value);
                value = __builtin_fmaf((float)south[east + byte], se, value);
                target[c * plane + x] = value;
            }
        }
        if (inside == NULL)
            continue;
        for (int64_t c = 0; c < channels; c++)
            for (x = 0; x < width; x++)
                target[c * plane + x] *= (float)inside[y * width + x];
    }
}
#endif

/* `region_height`: rows the array has (rows index into it), for the vectorised path */
void sample_bilinear_u8(BILINEAR_ARGS, int64_t region_height, int fused)
{
#if defined(__x86_64__)
    const int packed = (channels == 1 && pixel_stride == 1)
                       || (channels == 2 && pixel_stride == 2 && channel_stride == 1)
                       || (channels == 3 && pixel_stride == 3
                           && (channel_stride == 1 || channel_stride == -1));
    if (fused && packed && __builtin_cpu_supports("avx2")) {
        bilinear_bytes_avx2(BILINEAR_CALL, region_height);
        return;
    }
#endif
    if (fused)
        bilinear_fused(BILINEAR_CALL);
    else
        bilinear_plain(BILINEAR_CALL);
}

/*
 * The bytes of a sampled image scaled to [0, 1]: out[i] = round(values[i] * 255), halves to
 * even, as torch's `mul(255).round_()` and a cast give them (the product rounded to float32
 * first, then to an integer). Adding and subtracting 2^23 rounds a float32 in [0, 2^23) to an
 * integer in the default rounding mode (to nearest, halves to even) without a library call, so
 * the loop vectorises; contracting the product into that sum would round once, not twice.
 */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
void unit_to_bytes(const float *restrict values, int64_t count, uint8_t *restrict out)
{
    const float shift = 8388608.0f; /* 2^23 */
    for (int64_t i = 0; i < count; i++) {
        const float scaled = values[i] * 255.0f;
        out[i] = (uint8_t)((scaled + shift) - shift);
    }
}

/* An empty module, so that the shared library is also a valid Python extension. */
static struct PyModuleDef samplers_module = {PyModuleDef_HEAD_INIT, .m_name = "_samplers", .m_size = -1};

PyMODINIT_FUNC PyInit__samplers(void) { return PyModule_Create(&samplers_module); }
