/*
 * mcutl int8 kernels: CONV_2D for cores with the DSP extension (Cortex-M4/M7), bit-exact
 * with the portable mcutl_conv2d_s8 (conv2d.c, the reference).
 *
 * The technique of CMSIS-NN's arm_convolve_s8 (written anew here):
 * 1. im2col: the receptive fields of two output pixels are widened once into int16
 *    columns (twice the input minus its zero point, see 3; a tap in the padding is 0) in
 *    the scratch buffer. Every output channel then reads them, so the widening is paid
 *    once per pixel, not once per MAC.
 * 2. A 2 x 2 block (two output channels x two pixels) per inner loop: four weights of
 *    each channel are one load and two SXTB16 (bytes 0/2 and 1/3 as int16 pairs); the
 *    columns are stored in the matching order (x0, x2, x1, x3 per group of four, what
 *    SXTB16 of the input word yields), so every SMLAD takes two MACs with no repacking:
 *    16 MACs for 8 SMLAD, 4 SXTB16, 2 weight loads and 2 LDRD of the columns.
 *    Two groups per loop iteration (four when the taps are a multiple of 16), the
 *    pointers stepped by the loads themselves: 34 instructions per 32 MACs.
 * 3. The block's four sums go to the output while still in registers: the output stage
 *    of dsp.h (the sums are doubled by the doubled columns and bias, which saves the
 *    pre-shift, and the output zero point is folded into the rounding constant; in the
 *    common case SMMLAR, SUB, ASR and SSAT per output), exact when the layer's
 *    accumulators are provably small enough, which is checked once per call; a layer
 *    where it is not (or a grouped convolution) runs the portable kernel instead.
 * 4. The columns of a 1 x 1 convolution's pixel pair are widened in one pass; a small
 *    receptive field (a stem's: a few taps per window row) is gathered as bytes first
 *    and widened a word at a time.
 *
 * Scratch (mcutl_conv2d_s8_dsp_get_buffer_size): the two columns, then per output
 * channel its requantisation constants and doubled bias; 8 bytes per channel after them
 * are not used any more (they held the sums; kept so that arena plans stay the same).
 */
#include "mcutl/int8.h"

#include "args.h"
#include "dsp.h"
#include "fixedpoint.h"
#include "window.h"

/* Per output channel, computed once per call (in the scratch, after the columns): its
 * requantisation and bias. */
typedef struct {
    mcutl_out_requant_t q;
    int32_t bias; /* twice the bias: the sums are doubled */
} conv_chan_t;

/* Taps of one receptive field: KH * KW * C_in (groups == 1). */
static int32_t conv_taps(const mcutl_dims_t *filter_dims)
{
    return filter_dims->h * filter_dims->w * filter_dims->c;
}

int32_t mcutl_conv2d_s8_dsp_get_buffer_size(const mcutl_conv_params_t *params,
                                            const mcutl_dims_t *filter_dims)
{
    if (params == 0 || filter_dims == 0 || params->groups != 1) {
        return 0; /* grouped: the portable kernel, no scratch */
    }
    return 2 * conv_taps(filter_dims) * (int32_t)sizeof(int16_t) +
           filter_dims->n * (int32_t)(sizeof(conv_chan_t) + 2 * sizeof(int32_t));
}

/*
 * The scratch holds the columns of two output pixels (slots 0 and 1), interleaved so
 * that the inner loop walks one pointer: for each group g of four taps, 8 int16 at 8g,
 * slot 0's taps (4g, 4g+2, 4g+1, 4g+3) then slot 1's (the order SXTB16 of four input
 * bytes yields, and of four weights, so each SMLAD pairs the right products); the last
 * taps % 4 taps follow in order, slot 0's then slot 1's.
 */
static inline int32_t col_pos(int32_t k, int32_t slot, int32_t taps)
{
    static const int8_t order[4] = {0, 2, 1, 3};
    const int32_t taps4 = taps & ~3;
    if (k < taps4) {
        return 2 * (k & ~3) + 4 * slot + order[k & 3];
    }
    return 2 * taps4 + slot * (taps - taps4) + (k - taps4);
}

/*
 * Taps k0 .. k0 + n - 1 of the column in `slot`, from n consecutive input bytes (src)
 * or the padding (src == NULL: zeros), each as 2 * (x - zero point). Aligned groups of
 * four go a word at a time (one load; SXTAB16 twice adds the input bytes, widened
 * straight into the interleaved order, to -2 * zero point: two instructions per pair),
 * the taps before and after one at a time.
 */
static __attribute__((noinline)) void put_run_any(int16_t *col, int32_t slot, int32_t taps,
                                                  int32_t k0, const int8_t *src,
                    int32_t n, int32_t zp)
{
    const int32_t end = k0 + n;
    int32_t k = k0;
    for (; k < end && (k & 3) != 0; ++k) {
        col[col_pos(k, slot, taps)] = (int16_t)(src != 0 ? 2 * (src[k - k0] - zp) : 0);
    }
    if (src != 0) {
        const uint32_t m2zp = mcutl_pack16x2(-2 * zp, -2 * zp);
        for (; k + 4 <= end; k += 4) {
            const uint32_t w = mcutl_ld32(src + (k - k0));
            int16_t *dst = col + 2 * k + 4 * slot;
            mcutl_st32(dst, mcutl_sxtab16(mcutl_sxtab16(m2zp, w), w));
            mcutl_st32(dst + 2, mcutl_sxtab16_ror8(mcutl_sxtab16_ror8(m2zp, w), w));
        }
    } else {
        for (; k + 4 <= end; k += 4) {
            int16_t *dst = col + 2 * k + 4 * slot;
            mcutl_st32(dst, 0);
            mcutl_st32(dst + 2, 0);
        }
    }
    for (; k < end; ++k) {
        col[col_pos(k, slot, taps)] = (int16_t)(src != 0 ? 2 * (src[k - k0] - zp) : 0);
    }
}

/* put_run_any, with the common case inline: whole groups of four input taps (a window
 * row of C_in % 4 == 0 channels, or of a stem's four taps), a word at a time. */
MCUTL_INLINE void put_run(int16_t *col, int32_t slot, int32_t taps, int32_t k0,
                          const int8_t *src, int32_t n, int32_t zp)
{
    if (((k0 | n) & 3) == 0 && src != 0) {
        const uint32_t m2zp = mcutl_pack16x2(-2 * zp, -2 * zp);
        uint32_t *dst = (uint32_t *)(void *)(col + 2 * k0 + 4 * slot); /* 4-byte aligned */
        const int8_t *const end = src + n;
        for (; src != end; src += 4, dst += 4) {
            const uint32_t w = mcutl_ld32(src);
            dst[0] = mcutl_sxtab16(mcutl_sxtab16(m2zp, w), w);
            dst[1] = mcutl_sxtab16_ror8(mcutl_sxtab16_ror8(m2zp, w), w);
        }
        return;
    }
    put_run_any(col, slot, taps, k0, src, n, zp);
}

/* Receptive fields up to this many taps are gathered as bytes first (im2col_small). */
#define CONV_STAGE_TAPS 64

/* n bytes from src to dst, a word at a time while four are left (unaligned words: one
 * LDR/STR each on a Cortex-M3 and later). */
static inline int8_t *copy_bytes(int8_t *dst, const int8_t *src, int32_t n)
{
    int8_t *const end = dst + n;
    for (; end - dst >= 4; dst += 4, src += 4) {
        mcutl_st32(dst, mcutl_ld32(src));
    }
    while (dst != end) {
        *dst++ = *src++;
    }
    return dst;
}

/* n bytes of the byte v4 holds four times, at dst. */
static inline int8_t *fill_bytes(int8_t *dst, uint32_t v4, int32_t n)
{
    int8_t *const end = dst + n;
    for (; end - dst >= 4; dst += 4) {
        mcutl_st32(dst, v4);
    }
    while (dst != end) {
        *dst++ = (int8_t)v4;
    }
    return dst;
}

/*
 * One pixel's column (slot 0 or 1) of a small receptive field (taps <= CONV_STAGE_TAPS,
 * a stem's): the window's input bytes are gathered in order into a buffer on the stack,
 * the padding as the zero point (which widens to 0), then widened a word at a time from
 * there: a stem's short window rows (three taps of one channel) would otherwise go tap
 * by tap.
 */
static void im2col_small(const mcutl_conv_params_t *p, const int8_t *in_batch, int32_t in_h,
                         int32_t in_w, int32_t in_c, int32_t k_h, int32_t k_w, int32_t iy0,
                         int32_t ix0, int16_t *col, int32_t slot)
{
    uint32_t stage_words[CONV_STAGE_TAPS / 4];
    int8_t *const stage = (int8_t *)(void *)stage_words;
    const int32_t taps = k_h * k_w * in_c, row_taps = k_w * in_c;
    const uint32_t zp4 = (uint32_t)(uint8_t)p->input_zero_point * 0x01010101u;
    int8_t *dst = stage;
    int32_t ky, kx, kx_first, kx_last, i;
    mcutl_window_taps(ix0, k_w, p->dilation_w, in_w, &kx_first, &kx_last);
    for (ky = 0; ky < k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dilation_h;
        if (iy < 0 || iy >= in_h || kx_first == kx_last) {
            dst = fill_bytes(dst, zp4, row_taps);
        } else if (p->dilation_w == 1 && kx_first == 0 && kx_last == k_w) {
            dst = copy_bytes(dst, in_batch + (iy * in_w + ix0) * in_c, row_taps);
        } else if (p->dilation_w == 1) { /* the taps inside are one run */
            const int8_t *row = in_batch + (iy * in_w + ix0 + kx_first) * in_c;
            dst = fill_bytes(dst, zp4, kx_first * in_c);
            dst = copy_bytes(dst, row, (kx_last - kx_first) * in_c);
            dst = fill_bytes(dst, zp4, (k_w - kx_last) * in_c);
        } else {
            for (kx = 0; kx < k_w; ++kx) {
                const int32_t ix = ix0 + kx * p->dilation_w;
                if (ix >= 0 && ix < in_w) {
                    dst = copy_bytes(dst, in_batch + (iy * in_w + ix) * in_c, in_c);
                } else {
                    dst = fill_bytes(dst, zp4, in_c);
                }
            }
        }
    }
    put_run(col, slot, taps, 0, stage, taps & ~3, p->input_zero_point);
    for (i = taps & ~3; i < taps; ++i) { /* the last taps % 4, in order */
        col[col_pos(i, slot, taps)] = (int16_t)(2 * (stage[i] - p->input_zero_point));
    }
}

/*
 * One pixel's column (slot 0 or 1): the receptive field of the output pixel whose window
 * starts at input (iy0, ix0), each tap as 2 * (input - zero point) in int16, 0 in the
 * padding. A window row inside the image is one run of KW * C_in consecutive input
 * bytes (NHWC).
 */
static void im2col(const mcutl_conv_params_t *p, const int8_t *in_batch, int32_t in_h,
                   int32_t in_w, int32_t in_c, int32_t k_h, int32_t k_w, int32_t iy0,
                   int32_t ix0, int16_t *col, int32_t slot)
{
    const int32_t taps = k_h * k_w * in_c, row_taps = k_w * in_c;
    const int32_t zp = p->input_zero_point;
    const int whole_rows = p->dilation_w == 1 && ix0 >= 0 && ix0 + k_w <= in_w;
    int32_t ky, kx;
    if (taps <= CONV_STAGE_TAPS && (!whole_rows || (k_h > 1 && (row_taps & 3) != 0))) {
        im2col_small(p, in_batch, in_h, in_w, in_c, k_h, k_w, iy0, ix0, col, slot);
        return;
    }
    for (ky = 0; ky < k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dilation_h;
        const int32_t k = ky * row_taps;
        const int8_t *row;
        if (iy < 0 || iy >= in_h) {
            put_run(col, slot, taps, k, 0, row_taps, zp);
            continue;
        }
        row = in_batch + iy * in_w * in_c;
        if (whole_rows) {
            put_run(col, slot, taps, k, row + ix0 * in_c, row_taps, zp);
        } else {
            for (kx = 0; kx < k_w; ++kx) {
                const int32_t ix = ix0 + kx * p->dilation_w;
                put_run(col, slot, taps, k + kx * in_c,
                        ix >= 0 && ix < in_w ? row + ix * in_c : 0, in_c, zp);
            }
        }
    }
}

/*
 * The columns of a pixel pair of a 1 x 1 convolution (C_in a multiple of four), from
 * their input pixels x0 and x1 (inside the image): a group of four taps of both pixels
 * per step, two loads and 16 bytes stored, no tap-by-tap bookkeeping.
 */
static void im2col_1x1_pair(const int8_t *x0, const int8_t *x1, int32_t taps, int32_t zp,
                            int16_t *col)
{
    const uint32_t m2zp = mcutl_pack16x2(-2 * zp, -2 * zp);
    uint32_t *dst = (uint32_t *)(void *)col; /* 4-byte aligned */
    uint32_t *const end = dst + 4 * (taps >> 2);
    for (; dst != end; dst += 4, x0 += 4, x1 += 4) {
        const uint32_t u = mcutl_ld32(x0), v = mcutl_ld32(x1);
        dst[0] = mcutl_sxtab16(mcutl_sxtab16(m2zp, u), u);
        dst[1] = mcutl_sxtab16_ror8(mcutl_sxtab16_ror8(m2zp, u), u);
        dst[2] = mcutl_sxtab16(mcutl_sxtab16(m2zp, v), v);
        dst[3] = mcutl_sxtab16_ror8(mcutl_sxtab16_ror8(m2zp, v), v);
    }
}

/* What a call's blocks share, copied out of the params (the int8 stores may alias any
 * memory, so GCC would reload the params' fields after each one). */
typedef struct {
    const int8_t *filter;     /* [C_out][taps] */
    const conv_chan_t *chan;  /* [C_out] */
    const int16_t *col;       /* the two columns */
    int32_t taps, groups;     /* taps, and taps / 4 */
    int32_t out_c, lo, hi;    /* output channels, activation range */
    int fast;                 /* the fast output stage (conv_out) */
} conv_job_t;

/* One output from a doubled accumulator, requantised with the zero point folded in
 * (dsp.h): `fast`, the fast form and the activation range all of int8 (one SSAT), else
 * the general form clamped to the activation range. */
MCUTL_INLINE int8_t conv_out(int32_t acc2, const mcutl_out_requant_t *q, int fast,
                             int32_t lo, int32_t hi)
{
    if (fast) {
        return (int8_t)mcutl_ssat8(mcutl_out_requantize_fast(acc2, q));
    }
    return (int8_t)mcutl_clamp32(mcutl_out_requantize(acc2, q), lo, hi);
}

/* One group of four taps of a 2 x 2 block: two weight loads, four SXTB16, two LDRD of
 * the interleaved columns (all four loads step their pointers), eight SMLAD (16 MACs). */
MCUTL_INLINE void group_2x2(const int8_t **wa, const int8_t **wb, const uint32_t **c,
                             int32_t *a0, int32_t *a1, int32_t *b0, int32_t *b1)
{
    const uint32_t w_a = mcutl_ld32_inc(wa), w_b = mcutl_ld32_inc(wb);
    const uint32_t a02 = mcutl_sxtb16(w_a), b02 = mcutl_sxtb16(w_b);
    const uint32_t a13 = mcutl_sxtb16_ror8(w_a), b13 = mcutl_sxtb16_ror8(w_b);
    uint32_t x02, x13;
    *c = mcutl_ld2x32_inc(*c, &x02, &x13); /* pixel 0: taps (0, 2), (1, 3) */
    *a0 = mcutl_smlad(a02, x02, *a0);
    *b0 = mcutl_smlad(b02, x02, *b0);
    *a0 = mcutl_smlad(a13, x13, *a0);
    *b0 = mcutl_smlad(b13, x13, *b0);
    *c = mcutl_ld2x32_inc(*c, &x02, &x13); /* pixel 1 */
    *a1 = mcutl_smlad(a02, x02, *a1);
    *b1 = mcutl_smlad(b02, x02, *b1);
    *a1 = mcutl_smlad(a13, x13, *a1);
    *b1 = mcutl_smlad(b13, x13, *b1);
}

/*
 * Every 2 x 2 block of a pixel pair: channels (2i, 2i + 1) of the two pixels whose
 * columns are in j->col, written to out (pixel 0) and out + C_out (pixel 1, the next
 * output pixel). Per block the four sums start from twice the bias, take the taps in
 * groups of four (the loop does two groups per iteration, 34 instructions for 32 MACs,
 * or four when the taps allow, 66 for 64), the last taps % 4 one by one, and go
 * straight to the output stage while they are in registers. `fast` (conv_out) and
 * `even` (the taps a multiple of 8 * even: no odd group, no last taps, the loop entered
 * unconditionally and doing 2 * even groups per iteration) are constants in the
 * instantiations below.
 */
MCUTL_INLINE void blocks_2x2(const conv_job_t *j, int8_t *out, int fast, int even)
{
    const int32_t taps = j->taps, out_c = j->out_c, tail = even ? 0 : taps & 3;
    const uint32_t *const col = (const uint32_t *)(const void *)j->col; /* 4-byte aligned */
    const uint32_t *const col_odd = col + 4 * (j->groups & 1); /* past an odd group */
    const uint32_t *const col_end = col + 4 * j->groups;
    const conv_chan_t *ka = j->chan;
    const conv_chan_t *const ka_end = ka + (out_c & ~1);
    const int8_t *wb = j->filter; /* channel b's weights become the next block's a's */
    for (; ka != ka_end; ka += 2, out += 2) {
        const int8_t *wa = wb;
        const uint32_t *c = col;
        int32_t a0 = ka[0].bias, b0 = ka[1].bias, a1 = a0, b1 = b0;
        wb = wa + taps;
        if (!even && c != col_odd) {
            group_2x2(&wa, &wb, &c, &a0, &a1, &b0, &b1);
        }
        if (even || c != col_end) {
            do {
                group_2x2(&wa, &wb, &c, &a0, &a1, &b0, &b1);
                MCUTL_SCHED_BARRIER();
                group_2x2(&wa, &wb, &c, &a0, &a1, &b0, &b1);
                if (even == 2) {
                    MCUTL_SCHED_BARRIER();
                    group_2x2(&wa, &wb, &c, &a0, &a1, &b0, &b1);
                    MCUTL_SCHED_BARRIER();
                    group_2x2(&wa, &wb, &c, &a0, &a1, &b0, &b1);
                }
            } while (c != col_end);
        }
        if (tail != 0) { /* the last taps % 4, in order: pixel 0's, then pixel 1's */
            const int16_t *t0 = (const int16_t *)(const void *)c, *t1 = t0 + tail;
            int32_t k;
            for (k = 0; k < tail; ++k) {
                a0 += wa[k] * t0[k];
                b0 += wb[k] * t0[k];
                a1 += wa[k] * t1[k];
                b1 += wb[k] * t1[k];
            }
            wb += tail;
        }
        {
            /* both channels' constants loaded before the first int8 store (which could
             * alias them as far as C knows) */
            const mcutl_out_requant_t qa = ka[0].q, qb = ka[1].q;
            const int32_t lo = j->lo, hi = j->hi;
            out[0] = conv_out(a0, &qa, fast, lo, hi);
            out[1] = conv_out(b0, &qb, fast, lo, hi);
            out[out_c] = conv_out(a1, &qa, fast, lo, hi);
            out[out_c + 1] = conv_out(b1, &qb, fast, lo, hi);
        }
    }
}

/* The instantiations. Functions of their own so that GCC keeps the inner loop's 14
 * live values in registers. */
static __attribute__((noinline)) void blocks_2x2_fast_16(const conv_job_t *j, int8_t *out)
{
    blocks_2x2(j, out, 1, 2);
}

static __attribute__((noinline)) void blocks_2x2_fast_8(const conv_job_t *j, int8_t *out)
{
    blocks_2x2(j, out, 1, 1);
}

static __attribute__((noinline)) void blocks_2x2_fast(const conv_job_t *j, int8_t *out)
{
    blocks_2x2(j, out, 1, 0);
}

static __attribute__((noinline)) void blocks_2x2_general(const conv_job_t *j, int8_t *out)
{
    blocks_2x2(j, out, 0, 0);
}

/* Output channel k of the pixel whose column is in `slot`, all taps: a lone pixel's
 * channels and an odd channel count's last one. */
static int8_t dot_col(const conv_job_t *j, int32_t k, int32_t slot)
{
    const int32_t taps = j->taps, taps4 = taps & ~3;
    const int8_t *w = j->filter + k * taps;
    const int16_t *c = j->col + 4 * slot;
    const int16_t *tail = j->col + 2 * taps4 + slot * (taps - taps4);
    int32_t acc = j->chan[k].bias, i;
    for (i = 0; i < taps4; i += 4, c += 8) {
        const uint32_t wk = mcutl_ld32(w + i);
        acc = mcutl_smlad(mcutl_sxtb16(wk), mcutl_ld32(c), acc);
        acc = mcutl_smlad(mcutl_sxtb16_ror8(wk), mcutl_ld32(c + 2), acc);
    }
    for (i = taps4; i < taps; ++i) {
        acc += w[i] * tail[i - taps4];
    }
    return j->fast ? conv_out(acc, &j->chan[k].q, 1, j->lo, j->hi)
                   : conv_out(acc, &j->chan[k].q, 0, j->lo, j->hi);
}

/* Output channels [0, C_out) of one or two pixels (two == 0: slot 0 only) from their
 * columns, to out (and out + C_out). */
static void mat_mult(const conv_job_t *j, int two, int8_t *out)
{
    const int32_t out_c = j->out_c;
    int32_t k = 0;
    if (two) {
        if (j->fast && (j->taps & 15) == 0) {
            blocks_2x2_fast_16(j, out);
        } else if (j->fast && (j->taps & 7) == 0) {
            blocks_2x2_fast_8(j, out);
        } else if (j->fast) {
            blocks_2x2_fast(j, out);
        } else {
            blocks_2x2_general(j, out);
        }
        k = out_c & ~1;
        if (k != out_c) {
            out[out_c + k] = dot_col(j, k, 1);
        }
    }
    for (; k < out_c; ++k) {
        out[k] = dot_col(j, k, 0);
    }
}

mcutl_status_t mcutl_conv2d_s8_dsp(const mcutl_conv_params_t *params,
                                   const mcutl_dims_t *input_dims, const int8_t *input,
                                   const mcutl_dims_t *filter_dims, const int8_t *filter,
                                   const int32_t *bias,
                                   const mcutl_dims_t *output_dims, int8_t *output,
                                   void *scratch)
{
    int32_t b, pix, taps, in_h, in_w, in_c, out_w, out_c, pixels;
    int16_t *col;
    conv_chan_t *chan;
    conv_job_t j;
    int one_by_one; /* 1 x 1, C_in a multiple of four: im2col_1x1_pair */
    int form;       /* mcutl_out_requant_form */

    if (!mcutl_conv_args_ok(params, input_dims, input, filter_dims, filter, output_dims,
                            output)) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    taps = conv_taps(filter_dims);
    form = params->groups != 1 ? 0 : mcutl_out_requant_form(
        params->output_multiplier, params->output_shift, bias, output_dims->c, taps,
        params->act_min, params->act_max);
    if (form == 0) {
        return mcutl_conv2d_s8(params, input_dims, input, filter_dims, filter, bias,
                               output_dims, output);
    }
    if (scratch == 0 || ((uintptr_t)scratch & 3u) != 0) {
        return MCUTL_KERNEL_ARG_ERROR; /* LDRD of the columns faults if not word-aligned */
    }
    in_h = input_dims->h;
    in_w = input_dims->w;
    in_c = input_dims->c;
    out_w = output_dims->w;
    out_c = output_dims->c;
    pixels = output_dims->h * out_w;
    col = (int16_t *)scratch;
    chan = (conv_chan_t *)(col + 2 * taps);
    j.fast = form == 2;
    for (b = 0; b < out_c; ++b) {
        chan[b].q = mcutl_out_requant_params(params->output_multiplier[b],
                                             params->output_shift[b],
                                             params->output_zero_point, j.fast);
        chan[b].bias = bias != 0 ? 2 * bias[b] : 0;
    }
    j.filter = filter;
    j.chan = chan;
    j.col = col;
    j.taps = taps;
    j.groups = taps >> 2;
    j.out_c = out_c;
    j.lo = params->act_min;
    j.hi = params->act_max;

    one_by_one = filter_dims->h == 1 && filter_dims->w == 1 && (in_c & 3) == 0;

    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *in_batch = input + b * in_h * in_w * in_c;
        int8_t *out_batch = output + b * pixels * out_c;
        /* pixels in pairs, in output order (a pair may span two rows) */
        for (pix = 0; pix < pixels; pix += 2) {
            const int32_t n = pixels - pix >= 2 ? 2 : 1;
            int32_t i;
            if (one_by_one && n == 2) {
                const int32_t oy0 = pix / out_w, ox0 = pix - oy0 * out_w;
                const int32_t oy1 = ox0 + 1 < out_w ? oy0 : oy0 + 1;
                const int32_t ox1 = ox0 + 1 < out_w ? ox0 + 1 : 0;
                const int32_t iy0 = oy0 * params->stride_h - params->pad_top;
                const int32_t ix0 = ox0 * params->stride_w - params->pad_left;
                const int32_t iy1 = oy1 * params->stride_h - params->pad_top;
                const int32_t ix1 = ox1 * params->stride_w - params->pad_left;
                if (iy0 >= 0 && iy0 < in_h && ix0 >= 0 && ix0 < in_w && iy1 >= 0 &&
                    iy1 < in_h && ix1 >= 0 && ix1 < in_w) {
                    im2col_1x1_pair(in_batch + (iy0 * in_w + ix0) * in_c,
                                    in_batch + (iy1 * in_w + ix1) * in_c, taps,
                                    params->input_zero_point, col);
                    mat_mult(&j, 1, out_batch + pix * out_c);
                    continue;
                }
            }
            for (i = 0; i < n; ++i) {
                const int32_t oy = (pix + i) / out_w, ox = (pix + i) % out_w;
                im2col(params, in_batch, in_h, in_w, in_c, filter_dims->h, filter_dims->w,
                       oy * params->stride_h - params->pad_top,
                       ox * params->stride_w - params->pad_left, col, i);
            }
            mat_mult(&j, n == 2, out_batch + pix * out_c);
        }
    }
    return MCUTL_KERNEL_OK;
}
