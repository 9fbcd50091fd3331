/* Native CPU kernels of torchseg-metrics: single passes over the pixels that torch ops can only
 * express as several passes. Exact integer counting only; every kernel has a torch-op twin that
 * the tests compare it with (and that runs wherever this file cannot be compiled).
 *
 * Built at first use by torchseg_metrics/_native/__init__.py with the system C compiler
 * (cc -O3 -shared -fPIC), loaded with ctypes; tensors are passed as raw pointers to contiguous
 * CPU memory. No global state, no allocation that outlives a call, no threads.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ semantic confusion counts
 * For each image, counts[(img * (c + 2) + row) * (c + 1) + col] += 1 per pixel, where
 *   row = t if 0 <= t < c, else c + 1 if (has_ignore and t == ignore), else c
 *   col = p if 0 <= p < c, else c.
 * Counting goes into CONF_LANES interleaved uint32 histograms (consecutive pixels of a label map
 * mostly share one counter: separate copies keep the increments independent), or one when the
 * histogram is large (more than CONF_LANE_BINS counters: no cache to gain, memory to lose), flushed
 * into the int64 output at least every 2^31 pixels. Returns 0, or -1 when out of memory.
 */
#define CONF_LANES 4
#define CONF_LANE_BINS 65536
#define CONF_FLUSH ((int64_t)1 << 31)

/* One-byte labels: 8 pixels per 64-bit load of each map, their row offset and column looked up
 * in 256-entry tables, counted into up to 8 histogram copies (about 20% faster than the generic
 * loop). row_of/col_of map a byte to row * (c + 1) and to its column. */
static void count_bytes(const uint8_t *t, const uint8_t *p, int64_t n, const uint32_t *row_of,
                        const uint32_t *col_of, uint32_t *const *l) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t tw, pw;
        memcpy(&tw, t + i, 8);
        memcpy(&pw, p + i, 8);
        for (int k = 0; k < 8; k++) l[k][row_of[(tw >> (8 * k)) & 255] + col_of[(pw >> (8 * k)) & 255]]++;
    }
    for (; i < n; i++) l[0][row_of[t[i]] + col_of[p[i]]]++;
}

#define BYTE_LANES_BUDGET ((int64_t)1 << 18) /* counters in all copies: 1 MB, the L2 cache */

#define DEFINE_CONFUSION(TN, TT, PN, PT)                                                          \
    int confusion_##TN##_##PN(const TT *t, const PT *p, int64_t images, int64_t per_image,        \
                              int64_t c, int64_t ignore, int has_ignore, int64_t *counts) {       \
        const int64_t ncols = c + 1, nbins = (c + 2) * (c + 1);                                    \
        const int64_t stride = nbins <= CONF_LANE_BINS ? nbins : 0, copies = stride ? CONF_LANES : 1; \
        if (sizeof(TT) == 1 && sizeof(PT) == 1) {                                                  \
            const int64_t n8 = 8 * nbins <= BYTE_LANES_BUDGET ? 8 : (4 * nbins <= BYTE_LANES_BUDGET ? 4 : 1); \
            uint32_t *counters = (uint32_t *)calloc((size_t)(n8 * nbins), sizeof(uint32_t));        \
            if (counters == NULL) return -1;                                                       \
            uint32_t row_of[256], col_of[256], *l[8];                                              \
            for (int v = 0; v < 256; v++) {                                                        \
                const int64_t tv = (int64_t)(TT)(uint8_t)v, pv = (int64_t)(PT)(uint8_t)v;          \
                const int64_t row = (tv >= 0 && tv < c) ? tv : ((has_ignore && tv == ignore) ? c + 1 : c); \
                row_of[v] = (uint32_t)(row * ncols);                                               \
                col_of[v] = (uint32_t)((pv >= 0 && pv < c) ? pv : c);                              \
            }                                                                                      \
            for (int k = 0; k < 8; k++) l[k] = counters + (k % n8) * nbins;                        \
            for (int64_t img = 0; img < images; img++) {                                           \
                int64_t *out = counts + img * nbins;                                               \
                for (int64_t start = 0; start < per_image; start += CONF_FLUSH) {                  \
                    int64_t len = per_image - start < CONF_FLUSH ? per_image - start : CONF_FLUSH; \
                    count_bytes((const uint8_t *)(t + img * per_image + start),                    \
                                (const uint8_t *)(p + img * per_image + start), len, row_of, col_of, l); \
                    for (int64_t k = 0; k < n8; k++)                                               \
                        for (int64_t b = 0; b < nbins; b++) out[b] += counters[k * nbins + b];     \
                    memset(counters, 0, (size_t)(n8 * nbins) * sizeof(uint32_t));                  \
                }                                                                                  \
            }                                                                                      \
            free(counters);                                                                        \
            return 0;                                                                              \
        }                                                                                          \
        uint32_t *lanes = (uint32_t *)calloc((size_t)(copies * nbins), sizeof(uint32_t));           \
        if (lanes == NULL) return -1;                                                              \
        for (int64_t img = 0; img < images; img++) {                                               \
            const TT *ti = t + img * per_image;                                                    \
            const PT *pi = p + img * per_image;                                                    \
            int64_t *out = counts + img * nbins;                                                   \
            for (int64_t start = 0; start < per_image; start += CONF_FLUSH) {                      \
                int64_t stop = per_image - start < CONF_FLUSH ? per_image : start + CONF_FLUSH;    \
                int64_t i = start;                                                                 \
                for (; i + CONF_LANES <= stop; i += CONF_LANES) {                                  \
                    for (int k = 0; k < CONF_LANES; k++) {                                         \
                        int64_t tv = (int64_t)ti[i + k], pv = (int64_t)pi[i + k];                  \
                        int64_t row = (tv >= 0 && tv < c) ? tv                                     \
                                      : ((has_ignore && tv == ignore) ? c + 1 : c);                \
                        int64_t col = (pv >= 0 && pv < c) ? pv : c;                                \
                        lanes[k * stride + row * ncols + col]++;                                   \
                    }                                                                              \
                }                                                                                  \
                for (; i < stop; i++) {                                                            \
                    int64_t tv = (int64_t)ti[i], pv = (int64_t)pi[i];                              \
                    int64_t row = (tv >= 0 && tv < c) ? tv                                         \
                                  : ((has_ignore && tv == ignore) ? c + 1 : c);                    \
                    int64_t col = (pv >= 0 && pv < c) ? pv : c;                                    \
                    lanes[row * ncols + col]++;                                                    \
                }                                                                                  \
                for (int64_t k = 0; k < copies; k++) {                                             \
                    for (int64_t b = 0; b < nbins; b++) out[b] += lanes[k * nbins + b];            \
                }                                                                                  \
                memset(lanes, 0, (size_t)(copies * nbins) * sizeof(uint32_t));                     \
            }                                                                                      \
        }                                                                                          \
        free(lanes);                                                                               \
        return 0;                                                                                  \
    }

#define DEFINE_CONFUSION_FOR_TARGET(TN, TT)        \
    DEFINE_CONFUSION(TN, TT, u8, uint8_t)          \
    DEFINE_CONFUSION(TN, TT, i8, int8_t)           \
    DEFINE_CONFUSION(TN, TT, i16, int16_t)         \
    DEFINE_CONFUSION(TN, TT, i32, int32_t)         \
    DEFINE_CONFUSION(TN, TT, i64, int64_t)

DEFINE_CONFUSION_FOR_TARGET(u8, uint8_t)
DEFINE_CONFUSION_FOR_TARGET(i8, int8_t)
DEFINE_CONFUSION_FOR_TARGET(i16, int16_t)
DEFINE_CONFUSION_FOR_TARGET(i32, int32_t)
DEFINE_CONFUSION_FOR_TARGET(i64, int64_t)

/* ------------------------------------------------------------------ panoptic run records
 * Scans pixels [start, total) of flat (category, instance) pairs `p` and `t` (2 values a pixel)
 * and an optional crowd mask (1 byte a pixel, may be NULL), and writes one record per run of
 * consecutive pixels equal in all five channels: the run's first pixel index (idx) and its values
 * (cols: t_cat, t_inst, p_cat, p_inst, each a block of `cap` int64; crowd_out: 0/1 bytes). The
 * first pixel of every image (a multiple of per_image) and pixel `start` begin a run. Stops after
 * `cap` records; *next receives the first pixel not yet covered (total when done). Returns the
 * number of records written.
 */
#define DEFINE_RUNS(N, T)                                                                          \
    int64_t runs_##N(const T *p, const T *t, const uint8_t *crowd, int64_t start, int64_t total,   \
                     int64_t per_image, int64_t cap, int64_t *idx, int64_t *cols,                  \
                     uint8_t *crowd_out, int64_t *next) {                                          \
        int64_t n = 0, i = start;                                                                  \
        int64_t *tc = cols, *ti = cols + cap, *pc = cols + 2 * cap, *pi = cols + 3 * cap;          \
        while (i < total && n < cap) {                                                             \
            const T a = t[2 * i], b = t[2 * i + 1], e = p[2 * i], f = p[2 * i + 1];                \
            const uint8_t g = crowd ? (crowd[i] != 0) : 0;                                         \
            idx[n] = i;                                                                            \
            tc[n] = (int64_t)a;                                                                    \
            ti[n] = (int64_t)b;                                                                    \
            pc[n] = (int64_t)e;                                                                    \
            pi[n] = (int64_t)f;                                                                    \
            crowd_out[n] = g;                                                                      \
            n++;                                                                                   \
            int64_t end = (i / per_image + 1) * per_image;                                         \
            if (end > total) end = total;                                                          \
            i++;                                                                                   \
            if (crowd) {                                                                           \
                while (i < end && t[2 * i] == a && t[2 * i + 1] == b && p[2 * i] == e &&           \
                       p[2 * i + 1] == f && (crowd[i] != 0) == g)                                  \
                    i++;                                                                           \
            } else {                                                                               \
                while (i < end && t[2 * i] == a && t[2 * i + 1] == b && p[2 * i] == e &&           \
                       p[2 * i + 1] == f)                                                          \
                    i++;                                                                           \
            }                                                                                      \
        }                                                                                          \
        *next = i;                                                                                 \
        return n;                                                                                  \
    }

DEFINE_RUNS(u8, uint8_t)
DEFINE_RUNS(i8, int8_t)
DEFINE_RUNS(i16, int16_t)
DEFINE_RUNS(i32, int32_t)
DEFINE_RUNS(i64, int64_t)

/* ------------------------------------------------------------------ mask pixel counts
 * For one image's 0/1 byte masks, det (D, H, W) and gt (G, H, W): inter[d * G + g] = |det_d ∩ gt_g|,
 * det_area[d] = |det_d|, gt_area[g] = |gt_g|. A ground truth is read once for its count and
 * bounding box; a detection is streamed once for its count, and its first and last rows holding a
 * pixel are found from both ends (in cache by then). An intersection is counted, eight bytes at a
 * time, over the ground truth's box within the detection's rows only: every pixel outside is 0 in
 * one of the two masks. Returns 0; -1 when out of memory; -2 when those boxes would make the
 * intersections cost more than `budget` bytes of counting (large overlapping objects: a GEMM over
 * all pixels is then cheaper), in which case only the areas are valid.
 */
static inline uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* The sum of the eight byte lanes of s (each lane at most 255). */
static inline int64_t lane_sum(uint64_t s) {
    s = (s & 0x00FF00FF00FF00FFULL) + ((s >> 8) & 0x00FF00FF00FF00FFULL);
    s = (s & 0x0000FFFF0000FFFFULL) + ((s >> 16) & 0x0000FFFF0000FFFFULL);
    return (int64_t)((s & 0xFFFFFFFFULL) + (s >> 32));
}

/* Σ a[i] & b[i] over n bytes of 0/1 values; with b == NULL, Σ a[i]. */
static int64_t and_count(const uint8_t *a, const uint8_t *b, int64_t n) {
    int64_t total = 0, i = 0;
    while (n - i >= 8) {
        int64_t stop = n - i >= 8 * 255 ? i + 8 * 255 : i + (n - i) / 8 * 8;
        uint64_t s = 0;
        if (b) {
            for (; i < stop; i += 8) s += load64(a + i) & load64(b + i);
        } else {
            for (; i < stop; i += 8) s += load64(a + i);
        }
        total += lane_sum(s);
    }
    for (; i < n; i++) total += b ? (a[i] & b[i]) : a[i];
    return total;
}

/* Index of the first (last when from_end) nonzero byte of m[0..n), or -1 when all are zero. */
static int64_t first_set(const uint8_t *m, int64_t n, int from_end) {
    if (!from_end) {
        int64_t i = 0;
        while (i + 8 <= n && load64(m + i) == 0) i += 8;
        for (; i < n; i++)
            if (m[i]) return i;
        return -1;
    }
    int64_t i = n;
    while (i >= 8 && load64(m + i - 8) == 0) i -= 8;
    for (; i > 0; i--)
        if (m[i - 1]) return i - 1;
    return -1;
}

/* Σ m[i] over n bytes of 0/1 values, and the first and last nonzero bytes (*first = -1 when none),
 * located from the sums of blocks of 8 * 255 bytes: no second pass over the zeros. */
static int64_t count_span(const uint8_t *m, int64_t n, int64_t *first, int64_t *last) {
    const int64_t block = 8 * 255;
    int64_t total = 0, first_block = -1, last_block = -1;
    for (int64_t start = 0; start < n; start += block) {
        int64_t len = n - start < block ? n - start : block, c = and_count(m + start, NULL, len);
        if (c) {
            if (first_block < 0) first_block = start;
            last_block = start;
            total += c;
        }
    }
    *first = *last = -1;
    if (total) {
        int64_t len = n - last_block < block ? n - last_block : block;
        *first = first_block + first_set(m + first_block, block < n - first_block ? block : n - first_block, 0);
        *last = last_block + first_set(m + last_block, len, 1);
    }
    return total;
}

/* Pixel count of an (h, w) mask; box = [y0, y1, x0, x1) of its pixels (y0 = y1 = 0 when empty). */
static int64_t scan_box(const uint8_t *m, int64_t h, int64_t w, int64_t *box) {
    int64_t first, last, area = count_span(m, h * w, &first, &last);
    box[0] = box[1] = box[2] = box[3] = 0;
    if (area == 0) return 0;
    int64_t y0 = first / w, y1 = last / w + 1, x0 = w, x1 = 0;
    for (int64_t y = y0; y < y1; y++) {
        const uint8_t *r = m + y * w;
        int64_t a = first_set(r, x0, 0), b = first_set(r + x1, w - x1, 1);
        if (a >= 0) x0 = a;
        if (b >= 0) x1 = x1 + b + 1;
    }
    box[0] = y0, box[1] = y1, box[2] = x0, box[3] = x1;
    return area;
}

int mask_counts(const uint8_t *det, const uint8_t *gt, int64_t d, int64_t g, int64_t h, int64_t w,
                int64_t budget, int64_t *inter, int64_t *det_area, int64_t *gt_area) {
    const int64_t p = h * w;
    int64_t *gt_box = (int64_t *)malloc((size_t)(4 * g + 1) * sizeof(int64_t));
    if (gt_box == NULL) return -1;
    for (int64_t j = 0; j < g; j++) gt_area[j] = scan_box(gt + j * p, h, w, gt_box + 4 * j);
    for (int64_t i = 0; i < d; i++) {
        const uint8_t *m = det + i * p;
        int64_t first, last;
        det_area[i] = count_span(m, p, &first, &last);
        int64_t y0 = det_area[i] ? first / w : 0, y1 = det_area[i] ? last / w + 1 : 0;
        for (int64_t j = 0; j < g; j++) {
            const int64_t *gb = gt_box + 4 * j;
            int64_t ya = y0 > gb[0] ? y0 : gb[0], yb = y1 < gb[1] ? y1 : gb[1], total = 0;
            if (ya < yb && (budget -= (yb - ya) * (gb[3] - gb[2])) < 0) {
                free(gt_box);
                return -2;
            }
            const uint8_t *q = gt + j * p;
            for (int64_t y = ya; y < yb; y++) total += and_count(m + y * w + gb[2], q + y * w + gb[2], gb[3] - gb[2]);
            inter[i * g + j] = total;
        }
    }
    free(gt_box);
    return 0;
}

/* ------------------------------------------------------------------ class-plane argmax
 * For contiguous (N, C, P) scores: labels[n * P + j] = the first k maximising scores[n, k, j]
 * (a strict > keeps the first maximal class on ties, as torch.max does); returns the number of
 * pixels whose C scores hold a NaN (their label is then unspecified). Pixels go in chunks that stay
 * in cache while the C planes stream past them once.
 */
#define ARGMAX_CHUNK 2048

/* I is an integer type as wide as T: the loops over a chunk then vectorise (compare, blend). */
#define DEFINE_ARGMAX(N, T, I)                                                                     \
    int64_t argmax_##N(const T *scores, int64_t n, int64_t c, int64_t p, uint8_t *labels) {       \
        T best[ARGMAX_CHUNK];                                                                      \
        I index[ARGMAX_CHUNK], nan[ARGMAX_CHUNK];                                                  \
        int64_t nans = 0;                                                                          \
        for (int64_t img = 0; img < n; img++) {                                                    \
            const T *s = scores + img * c * p;                                                     \
            for (int64_t start = 0; start < p; start += ARGMAX_CHUNK) {                            \
                const int64_t m = p - start < ARGMAX_CHUNK ? p - start : ARGMAX_CHUNK;            \
                const T *plane = s + start;                                                        \
                for (int64_t j = 0; j < m; j++) {                                                  \
                    best[j] = plane[j];                                                            \
                    index[j] = 0;                                                                  \
                    nan[j] = plane[j] != plane[j];                                                 \
                }                                                                                  \
                for (int64_t k = 1; k < c; k++) {                                                  \
                    plane = s + k * p + start;                                                     \
                    const I kk = (I)k;                                                             \
                    for (int64_t j = 0; j < m; j++) { /* quiet compares: the loop vectorises */   \
                        const T v = plane[j], b = best[j];                                         \
                        const I ix = index[j], better = __builtin_isgreater(v, b);                 \
                        best[j] = better ? v : b;                                                  \
                        index[j] = better ? kk : ix;                                               \
                        nan[j] |= __builtin_isunordered(v, v);                                     \
                    }                                                                              \
                }                                                                                  \
                uint8_t *out = labels + img * p + start;                                           \
                for (int64_t j = 0; j < m; j++) {                                                  \
                    out[j] = (uint8_t)index[j];                                                    \
                    nans += nan[j] != 0;                                                           \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        return nans;                                                                               \
    }

DEFINE_ARGMAX(f32, float, int32_t)
DEFINE_ARGMAX(f64, double, int64_t)

/* ------------------------------------------------------------------ mask boundary bands
 * For n contiguous (h, w) 0/1 masks: out = mask & !erode(mask), the erosion by a (2d+1) square
 * with everything outside the image 0 (boundary-iou-api's one-pixel zero pad + cv2.erode). Only the
 * mask's bounding box is visited: outside it the mask is 0, which the erosion treats as the pad.
 * The erosion is separable: a window AND along rows, then along columns (see band_box).
 * out must be zeroed.
 * Returns 0, or -1 when the scratch buffers cannot be allocated.
 */
/* x[i] <- x[i] & x[i + k] for i < n - k (k >= 1: each x[i + k] is read before it changes), the
 * rest 0; entries are `step` bytes apart (rows of a box) or contiguous (step 1). Vectorises. */
static void and_shifted(uint8_t *x, int64_t n, int64_t step, int64_t k) {
    const int64_t keep = n > k ? n - k : 0;
    if (step == 1) {
        for (int64_t i = 0; i < keep; i++) x[i] &= x[i + k];
    } else {
        for (int64_t i = 0; i < keep; i++) {
            uint8_t *b = x + i * step;
            const uint8_t *a = b + k * step;
            for (int64_t j = 0; j < step; j++) b[j] &= a[j];
        }
    }
    memset(x + keep * step, 0, (size_t)((n - keep) * step));
}

/* x[i] <- x[i] & x[i + 1] & ... & x[i + len - 1] over n entries `step` bytes apart (0 beyond the
 * end), by doubling: log2(len) passes of independent ANDs. */
static void window_and(uint8_t *x, int64_t n, int64_t step, int64_t len) {
    int64_t covered = 1;
    for (; covered * 2 <= len; covered *= 2) and_shifted(x, n, step, covered);
    if (len > covered) and_shifted(x, n, step, len - covered); /* two windows overlap: no gap */
}

/* The band of one mask inside its box [y0, y1) x [x0, x1), written to dst (row stride `stride`,
 * dst pointing at the box's top-left pixel); rows (box area) is scratch. The erosion by the
 * (2d + 1) square, everything outside the box 0, is separable: along each row, then along each
 * column (whole rows at once), a window AND shifted by d to centre it. */
static void band_box(const uint8_t *m, int64_t w, const int64_t *box, int64_t d, uint8_t *rows, uint8_t *dst,
                     int64_t stride) {
    const int64_t y0 = box[0], bh = box[1] - box[0], x0 = box[2], bw = box[3] - box[2], len = 2 * d + 1;
    for (int64_t y = 0; y < bh; y++) {
        uint8_t *q = rows + y * bw;
        memcpy(q, m + (y0 + y) * w + x0, (size_t)bw);
        window_and(q, bw, 1, len);
        const int64_t kept = bw > d ? bw - d : 0; /* centre the window: shift right by d */
        memmove(q + (bw - kept), q, (size_t)kept);
        memset(q, 0, (size_t)(bw - kept));
    }
    window_and(rows, bh, bw, len);
    const int64_t kept = bh > d ? bh - d : 0; /* centre: shift down by d rows */
    memmove(rows + (bh - kept) * bw, rows, (size_t)(kept * bw));
    memset(rows, 0, (size_t)((bh - kept) * bw));
    for (int64_t y = 0; y < bh; y++) {
        const uint8_t *r = m + (y0 + y) * w + x0, *q = rows + y * bw;
        uint8_t *t = dst + y * stride;
        for (int64_t x = 0; x < bw; x++) t[x] = (uint8_t)(r[x] & (q[x] ^ 1));
    }
}

/* The bands of n (h, w) masks. boxes NULL: each mask's box is scanned and its band written into
 * the full image out + i * h * w (zeroed by the caller); else mask i's band goes, cut to boxes[i],
 * to out + offsets[i] as a block of the box's width. */
static int bands(const uint8_t *masks, int64_t n, int64_t h, int64_t w, int64_t d, const int64_t *boxes,
                 const int64_t *offsets, uint8_t *out) {
    const int64_t p = h * w;
    int64_t most = boxes == NULL ? p : 1;
    for (int64_t i = 0; boxes != NULL && i < n; i++) {
        const int64_t area = (boxes[4 * i + 1] - boxes[4 * i]) * (boxes[4 * i + 3] - boxes[4 * i + 2]);
        if (area > most) most = area;
    }
    uint8_t *rows = (uint8_t *)malloc((size_t)(most > 0 ? most : 1));
    if (rows == NULL) return -1;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *m = masks + i * p;
        int64_t scanned[4];
        const int64_t *box = boxes == NULL ? scanned : boxes + 4 * i;
        if (boxes == NULL) scan_box(m, h, w, scanned);
        if (box[1] <= box[0]) continue;
        uint8_t *dst = boxes == NULL ? out + i * p + box[0] * w + box[2] : out + offsets[i];
        band_box(m, w, box, d, rows, dst, boxes == NULL ? w : box[3] - box[2]);
    }
    free(rows);
    return 0;
}

int mask_boundaries(const uint8_t *masks, int64_t n, int64_t h, int64_t w, int64_t d, uint8_t *out) {
    return bands(masks, n, h, w, d, NULL, NULL, out);
}

/* ------------------------------------------------------------------ compact boundary bands
 * The same bands kept inside each mask's bounding box only: mask_boxes gives every mask's box
 * (4 int64 each: y0, y1, x0, x1; an empty mask has an empty box), band_crops writes mask i's band
 * at out + offsets[i] as a (y1 - y0, x1 - x0) block, and crop_counts counts band pixels and the
 * intersections of two sets of such blocks over their overlapping boxes. Nothing outside a box is
 * written or read: the full-image band of a detection is never materialised.
 */
void mask_boxes(const uint8_t *masks, int64_t n, int64_t h, int64_t w, int64_t *boxes, int64_t *areas) {
    for (int64_t i = 0; i < n; i++) areas[i] = scan_box(masks + i * h * w, h, w, boxes + 4 * i);
}

/* inter[i * g + j] for detections [lo, hi): the pixels shared by full (h, w) masks i and j, counted
 * over the overlap of their boxes only (the boxes of mask_boxes). */
void box_counts(const uint8_t *det, const int64_t *det_boxes, int64_t lo, int64_t hi, const uint8_t *gt,
                const int64_t *gt_boxes, int64_t g, int64_t h, int64_t w, int64_t *inter) {
    const int64_t p = h * w;
    for (int64_t i = lo; i < hi; i++) {
        const int64_t *a = det_boxes + 4 * i;
        for (int64_t j = 0; j < g; j++) {
            const int64_t *b = gt_boxes + 4 * j;
            const int64_t y0 = a[0] > b[0] ? a[0] : b[0], y1 = a[1] < b[1] ? a[1] : b[1];
            const int64_t x0 = a[2] > b[2] ? a[2] : b[2], x1 = a[3] < b[3] ? a[3] : b[3];
            int64_t total = 0;
            for (int64_t y = y0; x0 < x1 && y < y1; y++)
                total += and_count(det + i * p + y * w + x0, gt + j * p + y * w + x0, x1 - x0);
            inter[i * g + j] = total;
        }
    }
}

int band_crops(const uint8_t *masks, int64_t n, int64_t h, int64_t w, int64_t d, const int64_t *boxes,
               const int64_t *offsets, uint8_t *out) {
    return bands(masks, n, h, w, d, boxes, offsets, out);
}

void crop_counts(const uint8_t *det, const int64_t *det_boxes, const int64_t *det_offsets, int64_t lo, int64_t hi,
                 const uint8_t *gt, const int64_t *gt_boxes, const int64_t *gt_offsets, int64_t g, int64_t *inter,
                 int64_t *det_area) {
    for (int64_t i = lo; i < hi; i++) {
        const int64_t *a = det_boxes + 4 * i;
        const int64_t aw = a[3] - a[2];
        const uint8_t *da = det + det_offsets[i];
        int64_t area = 0;
        for (int64_t y = 0; y < a[1] - a[0]; y++) area += and_count(da + y * aw, NULL, aw);
        det_area[i] = area;
        for (int64_t j = 0; j < g; j++) {
            const int64_t *b = gt_boxes + 4 * j;
            const int64_t y0 = a[0] > b[0] ? a[0] : b[0], y1 = a[1] < b[1] ? a[1] : b[1];
            const int64_t x0 = a[2] > b[2] ? a[2] : b[2], x1 = a[3] < b[3] ? a[3] : b[3];
            int64_t total = 0;
            if (area && y0 < y1 && x0 < x1) {
                const int64_t bw = b[3] - b[2];
                const uint8_t *db = gt + gt_offsets[j];
                for (int64_t y = y0; y < y1; y++)
                    total += and_count(da + (y - a[0]) * aw + (x0 - a[2]), db + (y - b[0]) * bw + (x0 - b[2]), x1 - x0);
            }
            inter[i * g + j] = total;
        }
    }
}

/* ------------------------------------------------------------------ exact distance transform
 * In place, along one axis of a contiguous float64 array seen as (outer, n, inner), for its lines
 * [lo, hi) (line l = (l / inner, l % inner)) holding squared distances (0 at the sites, +inf
 * elsewhere on the first axis): f(q) <- min_p f(p) + (spacing (q - p))^2, the lower envelope of
 * parabolas (Felzenszwalb and Huttenlocher, 2012) in O(n) per line, each line gathered into a
 * scratch row (so no axis needs a transposed copy of the array). Infinite entries add no parabola;
 * a line without a finite entry stays +inf. Applied axis after axis this is the exact squared
 * Euclidean distance transform. `binary`: the entries are 0 or +inf (the first axis), swept
 * without parabolas; `sites` (NULL or bool, the shape of f): those entries are read from it (0 at
 * a site) and f is only written. Returns 0, or -1 when scratch memory is missing.
 */
/* One line in place: `row` (n entries), with scratch v (n), z (n + 1) and g (n). */
static void edt_row(double *row, int64_t n, double s2, double spacing, int64_t *v, double *z, double *g) {
    int64_t k = -1;
    for (int64_t q = 0; q < n; q++) {
        if (row[q] == INFINITY) continue;
        const double fq = row[q] + s2 * (double)q * (double)q;
        double s = 0.0;
        while (k >= 0) {
            const int64_t p = v[k];
            s = (fq - (row[p] + s2 * (double)p * (double)p)) / (2.0 * s2 * (double)(q - p));
            if (s > z[k]) break;
            k--;
        }
        k++;
        v[k] = q;
        z[k] = k == 0 ? -INFINITY : s;
        z[k + 1] = INFINITY;
    }
    if (k < 0) return; /* no site on this line: +inf stays */
    for (int64_t q = 0, j = 0; q < n; q++) {
        while (z[j + 1] < (double)q) j++;
        const double d = spacing * (double)(q - v[j]);
        g[q] = row[v[j]] + d * d;
    }
    memcpy(row, g, (size_t)n * sizeof(double));
}

/* The first axis, where every entry is 0 (a site) or +inf: the distance to the nearest site by one
 * sweep each way (no parabolas), squared with the spacing. */
static void edt_row_binary(double *row, int64_t n, double spacing) {
    int64_t last = -1;
    for (int64_t q = 0; q < n; q++) {
        if (row[q] == 0.0) {
            last = q;
        } else if (last >= 0) {
            row[q] = (double)(q - last);
        }
    }
    int64_t next = -1;
    for (int64_t q = n - 1; q >= 0; q--) {
        if (row[q] == 0.0) {
            next = q;
        } else if (next >= 0 && (double)(next - q) < row[q]) {
            row[q] = (double)(next - q);
        }
    }
    for (int64_t q = 0; q < n; q++) {
        if (row[q] != INFINITY) {
            const double d = spacing * row[q];
            row[q] = d * d;
        }
    }
}

/* Lines next to each other in memory (consecutive l % inner) are gathered EDT_BLOCK at a time, so
 * that each cache line of a strided axis is read and written once. */
#define EDT_BLOCK 16

int edt_axis(double *f, int64_t n, int64_t inner, int64_t lo, int64_t hi, double spacing, int binary,
             const uint8_t *sites) {
    const size_t len = (size_t)(n > 0 ? n : 1);
    int64_t *v = (int64_t *)malloc(len * sizeof(int64_t));
    double *z = (double *)malloc((len + 1) * sizeof(double));
    double *g = (double *)malloc(len * sizeof(double));
    double *rows = (double *)malloc(len * EDT_BLOCK * sizeof(double));
    if (v == NULL || z == NULL || g == NULL || rows == NULL) {
        free(v);
        free(z);
        free(g);
        free(rows);
        return -1;
    }
    const double s2 = spacing * spacing;
    for (int64_t line = lo; line < hi;) {
        const int64_t b = line % inner;
        int64_t cnt = inner - b < hi - line ? inner - b : hi - line;
        if (cnt > EDT_BLOCK) cnt = EDT_BLOCK;
        const int64_t start = (line / inner) * n * inner + b;
        double *base = f + start;
        if (sites != NULL) { /* the first axis read from the bool sites: f is written only */
            const uint8_t *at = sites + start;
            for (int64_t q = 0; q < n; q++)
                for (int64_t j = 0; j < cnt; j++) rows[j * n + q] = at[q * inner + j] ? 0.0 : INFINITY;
        } else {
            for (int64_t q = 0; q < n; q++)
                for (int64_t j = 0; j < cnt; j++) rows[j * n + q] = base[q * inner + j];
        }
        for (int64_t j = 0; j < cnt; j++) {
            if (binary) {
                edt_row_binary(rows + j * n, n, spacing);
            } else {
                edt_row(rows + j * n, n, s2, spacing, v, z, g);
            }
        }
        for (int64_t q = 0; q < n; q++)
            for (int64_t j = 0; j < cnt; j++) base[q * inner + j] = rows[j * n + q];
        line += cnt;
    }
    free(v);
    free(z);
    free(g);
    free(rows);
    return 0;
}

/* The same for `lines` contiguous lines of length n (the last axis). */
int edt_lines(double *f, int64_t lines, int64_t n, double spacing) {
    return edt_axis(f, n, 1, 0, lines, spacing, 0, NULL);
}
