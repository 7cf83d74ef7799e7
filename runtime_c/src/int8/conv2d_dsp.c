/*
 * mcutl int8 kernels: CONV_2D for cores with the DSP extension (Cortex-M4/M7), bit-exact
 * with the portable mcutl_conv2d_s8 (conv2d.c, the reference).
 *
 * The technique of CMSIS-NN's arm_convolve_s8 (written anew here):
 * 1. im2col: the receptive fields of two output pixels are widened once into int16
 *    columns (input minus its zero point; a tap in the padding is 0) in the scratch
 *    buffer. Every output channel then reads them, so the widening is paid once per
 *    pixel, not once per MAC.
 * 2. A 2 x 2 block (two output channels x two pixels) per inner loop: four weights of
 *    each channel are one load and two SXTB16 (bytes 0/2 and 1/3 as int16 pairs); the
 *    columns are stored in the matching order (x0, x2, x1, x3 per group of four, what
 *    SXTB16 of the input word yields), so every SMLAD takes two MACs with no repacking:
 *    16 MACs for 8 SMLAD, 4 SXTB16, 2 weight loads and 2 LDRD of the columns.
 * 3. Per-channel requantisation of the sums with mcutl_fast_requantize (dsp.h): SMMULR
 *    and three shifts/adds, exact when the layer's accumulators are provably small
 *    enough, which is checked once per call; a layer where it is not (or a grouped
 *    convolution) runs the portable kernel instead. Both pixels of a channel are
 *    clamped together as int16 pairs (QADD16, SSUB16 + SEL).
 *
 * Scratch (mcutl_conv2d_s8_dsp_get_buffer_size): the two columns, then per output
 * channel its requantisation constants and bias, then two int32 sums per channel.
 */
#include "mcutl/int8.h"

#include "args.h"
#include "dsp.h"
#include "fixedpoint.h"
#include "window.h"

/* Per output channel, computed once per call (in the scratch, after the columns): its
 * requantisation and bias. */
typedef struct {
    mcutl_fast_requant_t q;
    int32_t bias;
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
 * or the padding (src == NULL: zeros). Aligned groups of four go a word at a time (one
 * load, SXTB16 straight into the interleaved order, SSUB16 of the zero point), the
 * taps before and after one at a time.
 */
static void put_run(int16_t *col, int32_t slot, int32_t taps, int32_t k0, const int8_t *src,
                    int32_t n, int32_t zp)
{
    const int32_t end = k0 + n;
    int32_t k = k0;
    for (; k < end && (k & 3) != 0; ++k) {
        col[col_pos(k, slot, taps)] = (int16_t)(src != 0 ? src[k - k0] - zp : 0);
    }
    if (src != 0) {
        const uint32_t zp2 = ((uint32_t)(uint16_t)zp << 16) | (uint16_t)zp;
        for (; k + 4 <= end; k += 4) {
            const uint32_t w = mcutl_ld32(src + (k - k0));
            int16_t *dst = col + 2 * k + 4 * slot;
            mcutl_st32(dst, mcutl_ssub16(mcutl_sxtb16(w), zp2));
            mcutl_st32(dst + 2, mcutl_ssub16(mcutl_sxtb16_ror8(w), zp2));
        }
    } else {
        for (; k + 4 <= end; k += 4) {
            int16_t *dst = col + 2 * k + 4 * slot;
            mcutl_st32(dst, 0);
            mcutl_st32(dst + 2, 0);
        }
    }
    for (; k < end; ++k) {
        col[col_pos(k, slot, taps)] = (int16_t)(src != 0 ? src[k - k0] - zp : 0);
    }
}

/*
 * One pixel's column (slot 0 or 1): the receptive field of the output pixel whose window
 * starts at input (iy0, ix0), each tap as (input - zero point) in int16, 0 in the
 * padding. A window row inside the image is one run of KW * C_in consecutive input
 * bytes (NHWC), so a stem with one or three channels widens a word at a time too.
 */
static void im2col(const mcutl_conv_params_t *p, const int8_t *in_batch, int32_t in_h,
                   int32_t in_w, int32_t in_c, int32_t k_h, int32_t k_w, int32_t iy0,
                   int32_t ix0, int16_t *col, int32_t slot)
{
    const int32_t taps = k_h * k_w * in_c, row_taps = k_w * in_c;
    const int32_t zp = p->input_zero_point;
    const int whole_rows = p->dilation_w == 1 && ix0 >= 0 && ix0 + k_w <= in_w;
    int32_t ky, kx;
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

/* What every output shares, copied out of the params: the int8 stores may alias any
 * memory, so GCC would reload the params' fields after each one. */
typedef struct {
    int32_t zp, lo, hi;
} conv_out_t;

/* Requantise, add the output zero point, clamp: one int8 output. */
static inline int8_t finish(int32_t acc, const mcutl_fast_requant_t *q, conv_out_t o)
{
    const int32_t v = mcutl_fast_requantize(acc, *q) + o.zp;
    return (int8_t)mcutl_clamp32(v, o.lo, o.hi);
}

/* What every 2 x 2 block of a call shares. */
typedef struct {
    int32_t taps;    /* KH * KW * C_in */
    int32_t groups4; /* taps / 4 */
    conv_out_t o;
} conv_geom_t;

/*
 * The 2 x 2 blocks of a pixel pair: channels (2i, 2i + 1) for i < pairs, weights from
 * wa on, of the two pixels whose columns are in col, their sums (bias included) written
 * to sums[c][pixel] (requant_pair requantises them). The inner
 * loop takes per group of four taps two weight loads, two LDRD of the columns, four
 * SXTB16 and eight SMLAD: 18 instructions for 16 MACs. A function of its own so that GCC
 * keeps the loop's 13 live values in registers (inlined into its caller, or unrolled,
 * it spills them to the stack), all channel pairs in one call.
 */
static __attribute__((noinline)) void blocks_2x2(const int8_t *wa, const int16_t *col,
                                                 const conv_chan_t *ka, int32_t pairs,
                                                 const conv_geom_t *g, int32_t *sums)
{
    const int32_t taps = g->taps, tail = taps - 4 * g->groups4;
    const uint32_t *const col_end = (const uint32_t *)(const void *)col + 4 * g->groups4;
    const conv_chan_t *const ka_end = ka + 2 * pairs;
    for (; ka != ka_end; ka += 2, wa += 2 * taps) {
        const int8_t *wb = wa + taps;
        int32_t a0 = ka[0].bias, b0 = ka[1].bias, a1 = a0, b1 = b0;
        const uint32_t *c = (const uint32_t *)(const void *)col; /* 4-byte aligned */
        while (c < col_end) {
            const uint32_t w_a = mcutl_ld32(wa), w_b = mcutl_ld32(wb);
            uint32_t wa_ = mcutl_sxtb16(w_a), wb_ = mcutl_sxtb16(w_b), x02, x13;
            c = mcutl_ld2x32_inc(c, &x02, &x13); /* pixel 0: taps (0, 2), (1, 3) */
            a0 = mcutl_smlad(wa_, x02, a0);
            b0 = mcutl_smlad(wb_, x02, b0);
            wa_ = mcutl_sxtb16_ror8(w_a);
            wb_ = mcutl_sxtb16_ror8(w_b);
            a0 = mcutl_smlad(wa_, x13, a0);
            b0 = mcutl_smlad(wb_, x13, b0);
            c = mcutl_ld2x32_inc(c, &x02, &x13); /* pixel 1 */
            a1 = mcutl_smlad(wa_, x13, a1);
            b1 = mcutl_smlad(wb_, x13, b1);
            a1 = mcutl_smlad(mcutl_sxtb16(w_a), x02, a1);
            b1 = mcutl_smlad(mcutl_sxtb16(w_b), x02, b1);
            wa += 4;
            wb += 4;
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
        }
        wa -= 4 * g->groups4; /* back to the row start: the loop steps a whole row */
        sums[0] = a0;
        sums[1] = a1;
        sums[2] = b0;
        sums[3] = b1;
        sums += 4;
    }
}

/*
 * The sums of both pixels, sums[c][pixel] for channels [0, n), requantised to out0[c]
 * and out1[c]: a loop of its own, where the requantisation constants fit in registers
 * (in the block loop they would be spilled, and reloaded after every int8 store).
 */
static __attribute__((noinline)) void requant_pair(const int32_t *sums, const conv_chan_t *chan,
                                                   int32_t n, conv_out_t o, int8_t *out0,
                                                   int8_t *out1)
{
    /* the two pixels' results side by side as int16 (saturating first cannot change a
     * result clamped into int8): the zero point, the lower and the upper bound are
     * then one SIMD instruction or two for both */
    const uint32_t zp2 = mcutl_pack16x2(o.zp, o.zp);
    const uint32_t lo2 = mcutl_pack16x2(o.lo, o.lo), hi2 = mcutl_pack16x2(o.hi, o.hi);
    int32_t c;
    for (c = 0; c < n; ++c, sums += 2) {
        const mcutl_fast_requant_t q = chan[c].q;
        const int32_t v0 = mcutl_ssat16(mcutl_fast_requantize(sums[0], q));
        const int32_t v1 = mcutl_ssat16(mcutl_fast_requantize(sums[1], q));
        uint32_t v = mcutl_qadd16(mcutl_pack16x2(v0, v1), zp2);
        v = mcutl_min16x2(mcutl_max16x2(v, lo2), hi2);
        out0[c] = (int8_t)mcutl_lo16(v);
        out1[c] = (int8_t)mcutl_hi16(v);
    }
}

/* acc[0] (+ acc[1] for a second channel wb) += pixel `slot`'s column times the weights,
 * all taps; the 2 x 2 block's partner for a lone pixel or channel. */
static void dot_cols(const int8_t *wa, const int8_t *wb, const int16_t *col, int32_t taps,
                     int32_t slot, int32_t *acc)
{
    const int32_t taps4 = taps & ~3;
    const int16_t *c = col + 4 * slot;
    const int16_t *tail = col + 2 * taps4 + slot * (taps - taps4);
    int32_t a = acc[0], b = acc[1], k;
    for (k = 0; k < taps4; k += 4, c += 8) {
        const uint32_t w_a = mcutl_ld32(wa + k);
        const uint32_t x02 = mcutl_ld32(c), x13 = mcutl_ld32(c + 2);
        a = mcutl_smlad(mcutl_sxtb16(w_a), x02, a);
        a = mcutl_smlad(mcutl_sxtb16_ror8(w_a), x13, a);
        if (wb != 0) {
            const uint32_t w_b = mcutl_ld32(wb + k);
            b = mcutl_smlad(mcutl_sxtb16(w_b), x02, b);
            b = mcutl_smlad(mcutl_sxtb16_ror8(w_b), x13, b);
        }
    }
    for (k = taps4; k < taps; ++k) {
        a += wa[k] * tail[k - taps4];
        if (wb != 0) {
            b += wb[k] * tail[k - taps4];
        }
    }
    acc[0] = a;
    acc[1] = b;
}

/*
 * Output channels [0, out_c) of one or two pixels (two == 0: slot 0 only) from their
 * columns in col, written to out0/out1 (NHWC: out_c consecutive bytes each).
 */
static void mat_mult(const conv_chan_t *chan, conv_out_t o, const int8_t *filter,
                     int32_t out_c, int32_t taps, const int16_t *col, int two, int8_t *out0,
                     int8_t *out1, int32_t *sums)
{
    int32_t oc;
    conv_geom_t g;
    g.taps = taps;
    g.groups4 = taps >> 2;
    g.o = o;
    oc = 0;
    if (two) { /* every channel pair of both pixels in one call */
        blocks_2x2(filter, col, chan, out_c / 2, &g, sums);
        requant_pair(sums, chan, out_c & ~1, o, out0, out1);
        oc = out_c & ~1;
    }
    for (; oc < out_c; oc += 2) {
        const int pair = oc + 1 < out_c; /* else an odd channel count's last channel */
        const int8_t *wa = filter + oc * taps;
        const int8_t *wb = pair ? wa + taps : 0;
        const conv_chan_t *ka = chan + oc;
        int32_t acc[4];
        acc[0] = ka[0].bias;
        acc[1] = pair ? ka[1].bias : 0;
        dot_cols(wa, wb, col, taps, 0, acc);
        out0[oc] = finish(acc[0], &ka[0].q, o);
        if (pair) {
            out0[oc + 1] = finish(acc[1], &ka[1].q, o);
        }
        if (two) {
            acc[0] = ka[0].bias;
            acc[1] = 0;
            dot_cols(wa, 0, col, taps, 1, acc);
            out1[oc] = finish(acc[0], &ka[0].q, o);
        }
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
    int32_t *sums;
    conv_out_t o;

    if (!mcutl_conv_args_ok(params, input_dims, input, filter_dims, filter, output_dims,
                            output)) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    taps = conv_taps(filter_dims);
    if (params->groups != 1 ||
        !mcutl_fast_requant_ok(params->output_multiplier, params->output_shift, bias,
                               output_dims->c, taps)) {
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
    sums = (int32_t *)(chan + out_c);
    for (b = 0; b < out_c; ++b) {
        chan[b].q = mcutl_fast_requant_params(params->output_multiplier[b],
                                              params->output_shift[b]);
        chan[b].bias = bias != 0 ? bias[b] : 0;
    }
    o.zp = params->output_zero_point;
    o.lo = params->act_min;
    o.hi = params->act_max;

    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *in_batch = input + b * in_h * in_w * in_c;
        int8_t *out_batch = output + b * pixels * out_c;
        /* pixels in pairs, in output order (a pair may span two rows) */
        for (pix = 0; pix < pixels; pix += 2) {
            const int32_t n = pixels - pix >= 2 ? 2 : 1;
            int32_t i;
            for (i = 0; i < n; ++i) {
                const int32_t oy = (pix + i) / out_w, ox = (pix + i) % out_w;
                im2col(params, in_batch, in_h, in_w, in_c, filter_dims->h, filter_dims->w,
                       oy * params->stride_h - params->pad_top,
                       ox * params->stride_w - params->pad_left, col, i);
            }
            mat_mult(chan, o, filter, out_c, taps, col, n == 2, out_batch + pix * out_c,
                     n == 2 ? out_batch + (pix + 1) * out_c : 0, sums);
        }
    }
    return MCUTL_KERNEL_OK;
}
