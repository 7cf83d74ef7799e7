/*
 * mcutl int8 kernels: DEPTHWISE_CONV_2D for cores with the DSP extension (Cortex-M4/M7),
 * bit-exact with the portable mcutl_depthwise_conv2d_s8 (depthwise_conv2d.c).
 *
 * SMLAD multiplies two int16 pairs and adds both products to one sum, so the two
 * products must belong to the same output: two horizontally adjacent taps of one
 * channel. In NHWC those inputs are C bytes apart, so the kernel keeps the input rows a
 * window needs transposed in the scratch, channel by channel: T[row][c][col] =
 * input - zero point as int16, with the padding columns 0. Two adjacent taps are then one
 * 32-bit load, and their weights, packed once per call as (w[kx], w[kx + 1]) pairs (an odd
 * last tap paired with 0), one register. Per output: KH * ceil(KW / 2) loads and SMLADs,
 * no zero-point or edge handling in the loop (the zeros are in the rows).
 *
 * Each input row is transposed once per call: the KH rows a window spans are a ring
 * (row iy in slot iy mod KH), and the next output row transposes only the rows it adds
 * (with vertical dilation, slot ky: rows are transposed again when they change).
 * Layers it does not cover (depth multiplier > 1, horizontal dilation, accumulators its
 * fast requantisation cannot prove exact) run the portable kernel.
 */
#include "mcutl/int8.h"

#include "args.h"
#include "dsp.h"
#include "fixedpoint.h"
#include "window.h"

/* Filter heights the kernel takes (its table of rows is on the stack). */
#define MCUTL_DW_DSP_MAX_KH 16

/* The scratch: packed weights, the per-channel table, the sums of an output row, the KH
 * transposed rows, and a row of zeros (what a window row in the padding reads, so that every output takes the
 * same path). */
typedef struct {
    int32_t pairs;    /* ceil(KW / 2): tap pairs per filter row */
    int32_t cols;     /* int16 columns of a transposed row (even) */
    int32_t w_words;  /* packed weights: C * KH * pairs words */
    int32_t row_halfs; /* int16 of one transposed row: C * cols */
} dw_layout_t;

/* Per output channel, computed once per call: its requantisation and bias. */
typedef struct {
    mcutl_fast_requant_t q;
    int32_t bias;
} dw_chan_t;

static int dw_fast_ok(const mcutl_dw_conv_params_t *p, const mcutl_dims_t *filter_dims)
{
    return p->depth_multiplier == 1 && p->dilation_w == 1 &&
           filter_dims->h <= MCUTL_DW_DSP_MAX_KH;
}

static dw_layout_t dw_layout(const mcutl_dw_conv_params_t *p, const mcutl_dims_t *input_dims,
                             const mcutl_dims_t *filter_dims, const mcutl_dims_t *output_dims)
{
    dw_layout_t l;
    int32_t need;
    l.pairs = (filter_dims->w + 1) / 2;
    /* columns the last output reads (its last pair may reach one past the window), and
     * every input column */
    need = (output_dims->w - 1) * p->stride_w + 2 * l.pairs;
    if (need < p->pad_left + input_dims->w) {
        need = p->pad_left + input_dims->w;
    }
    l.cols = (need + 1) & ~1;
    l.w_words = input_dims->c * filter_dims->h * l.pairs;
    l.row_halfs = input_dims->c * l.cols;
    return l;
}

int32_t mcutl_depthwise_conv2d_s8_dsp_get_buffer_size(const mcutl_dw_conv_params_t *params,
                                                      const mcutl_dims_t *input_dims,
                                                      const mcutl_dims_t *filter_dims,
                                                      const mcutl_dims_t *output_dims)
{
    dw_layout_t l;
    if (params == 0 || input_dims == 0 || filter_dims == 0 || output_dims == 0 ||
        !dw_fast_ok(params, filter_dims)) {
        return 0; /* the portable kernel, no scratch */
    }
    l = dw_layout(params, input_dims, filter_dims, output_dims);
    return 4 * l.w_words + (int32_t)sizeof(dw_chan_t) * input_dims->c +
           4 * input_dims->c * output_dims->w +
           2 * (filter_dims->h * l.row_halfs + l.cols);
}

/* Weights [1, KH, KW, C] -> per channel, per filter row, (w[kx], w[kx + 1]) int16 pairs. */
static void pack_weights(const int8_t *filter, int32_t k_h, int32_t k_w, int32_t ch,
                         int32_t pairs, uint32_t *packed)
{
    int32_t c, ky, j;
    for (c = 0; c < ch; ++c) {
        for (ky = 0; ky < k_h; ++ky) {
            for (j = 0; j < pairs; ++j) {
                const int32_t kx = 2 * j;
                const int32_t lo = filter[(ky * k_w + kx) * ch + c];
                const int32_t hi = kx + 1 < k_w ? filter[(ky * k_w + kx + 1) * ch + c] : 0;
                *packed++ = ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16);
            }
        }
    }
}

/* Input row iy (inside the image) -> T[c][col], col = x + pad_left (the other columns
 * are the padding, zeroed once per call: every row leaves them alone). */
static void transpose_row(const int8_t *row, int32_t in_w, int32_t ch, int32_t zp,
                          int32_t pad_left, int32_t cols, int16_t *t)
{
    int32_t c, x;
    t += pad_left;
    c = 0;
    if ((ch & 3) == 0) {
        /* four channels per load: SXTB16 splits them into (c, c+2) and (c+1, c+3) */
        const uint32_t zp2 = ((uint32_t)(uint16_t)zp << 16) | (uint16_t)zp;
        for (x = 0; x < in_w; ++x) {
            const int8_t *src = row + x * ch;
            int16_t *dst = t + x;
            for (c = 0; c < ch; c += 4, dst += 4 * cols) {
                const uint32_t w = mcutl_ld32(src + c);
                const uint32_t e = mcutl_ssub16(mcutl_sxtb16(w), zp2);
                const uint32_t o = mcutl_ssub16(mcutl_sxtb16_ror8(w), zp2);
                dst[0] = (int16_t)(e & 0xFFFFu);
                dst[cols] = (int16_t)(o & 0xFFFFu);
                dst[2 * cols] = (int16_t)(e >> 16);
                dst[3 * cols] = (int16_t)(o >> 16);
            }
        }
        return;
    }
    for (x = 0; x < in_w; ++x) {
        const int8_t *src = row + x * ch;
        for (c = 0; c < ch; ++c) {
            t[c * cols + x] = (int16_t)(src[c] - zp);
        }
    }
}

/* One output row, all channels: what the row functions read. */
typedef struct {
    const int16_t *row[MCUTL_DW_DSP_MAX_KH]; /* window row ky, at channel 0 */
    int32_t row_step[MCUTL_DW_DSP_MAX_KH];   /* int16 between channels (0: the zeros) */
    const uint32_t *packed;                  /* weight pairs, [C][KH][pairs] */
    const dw_chan_t *chan;                   /* [C] */
    int32_t *sums;                           /* [C][W_out]: the row's sums */
    int32_t ch, k_h, pairs, out_w, step;     /* step: int16 columns between outputs */
    int32_t out_zp, act_min, act_max;
} dw_out_row_t;

/*
 * The common 3 x 3 (or 3 x 4) filter, in two passes over an output row so that neither
 * spills registers. First every channel's sums without the bias, sums[c][ox]: per
 * channel the six weight pairs stay in registers and each output is six loads and six
 * SMLADs; `step` (the stride) is a constant in the instantiations below.
 */
static inline void dw_sums_3x2(const dw_out_row_t *r, int32_t step)
{
    const int32_t ch = r->ch, out_w = r->out_w;
    const int16_t *const row0 = r->row[0], *const row1 = r->row[1], *const row2 = r->row[2];
    const int32_t s0 = r->row_step[0], s1 = r->row_step[1], s2 = r->row_step[2];
    const uint32_t *wp = r->packed;
    int32_t *sum = r->sums;
    int32_t c;
    for (c = 0; c < ch; ++c, wp += 6) {
        const uint32_t w00 = wp[0], w01 = wp[1], w10 = wp[2], w11 = wp[3], w20 = wp[4];
        const uint32_t w21 = wp[5];
        const int16_t *t0 = row0 + c * s0, *t1 = row1 + c * s1, *t2 = row2 + c * s2;
        int32_t *const end2 = sum + (out_w & ~1);
        /* two outputs per iteration: the loop's pointer steps and branch shared */
        for (; sum != end2; sum += 2) {
            int32_t a = mcutl_smlad(mcutl_ld32(t0), w00, 0);
            int32_t b = mcutl_smlad(mcutl_ld32(t0 + step), w00, 0);
            a = mcutl_smlad(mcutl_ld32(t0 + 2), w01, a);
            b = mcutl_smlad(mcutl_ld32(t0 + step + 2), w01, b);
            a = mcutl_smlad(mcutl_ld32(t1), w10, a);
            b = mcutl_smlad(mcutl_ld32(t1 + step), w10, b);
            a = mcutl_smlad(mcutl_ld32(t1 + 2), w11, a);
            b = mcutl_smlad(mcutl_ld32(t1 + step + 2), w11, b);
            a = mcutl_smlad(mcutl_ld32(t2), w20, a);
            b = mcutl_smlad(mcutl_ld32(t2 + step), w20, b);
            a = mcutl_smlad(mcutl_ld32(t2 + 2), w21, a);
            b = mcutl_smlad(mcutl_ld32(t2 + step + 2), w21, b);
            sum[0] = a;
            sum[1] = b;
            t0 += 2 * step;
            t1 += 2 * step;
            t2 += 2 * step;
        }
        if (out_w & 1) {
            int32_t acc = mcutl_smlad(mcutl_ld32(t0), w00, 0);
            acc = mcutl_smlad(mcutl_ld32(t0 + 2), w01, acc);
            acc = mcutl_smlad(mcutl_ld32(t1), w10, acc);
            acc = mcutl_smlad(mcutl_ld32(t1 + 2), w11, acc);
            acc = mcutl_smlad(mcutl_ld32(t2), w20, acc);
            acc = mcutl_smlad(mcutl_ld32(t2 + 2), w21, acc);
            *sum++ = acc;
        }
    }
}

static __attribute__((noinline)) void dw_sums_3x2_s1(const dw_out_row_t *r)
{
    dw_sums_3x2(r, 1);
}

static __attribute__((noinline)) void dw_sums_3x2_s2(const dw_out_row_t *r)
{
    dw_sums_3x2(r, 2);
}

static __attribute__((noinline)) void dw_sums_3x2_any(const dw_out_row_t *r)
{
    dw_sums_3x2(r, r->step);
}

/* Then the sums plus bias, requantised, to the NHWC output row; two outputs of a channel
 * at a time side by side as int16 (saturating first cannot change a result clamped into
 * int8), so that the zero point and each bound are one or two SIMD instructions. */
static __attribute__((noinline)) void dw_requant_rows(const dw_out_row_t *r, int8_t *out)
{
    const int32_t ch = r->ch, out_w = r->out_w;
    const uint32_t zp2 = mcutl_pack16x2(r->out_zp, r->out_zp);
    const uint32_t lo2 = mcutl_pack16x2(r->act_min, r->act_min);
    const uint32_t hi2 = mcutl_pack16x2(r->act_max, r->act_max);
    const int32_t *sum = r->sums;
    int32_t c;
    for (c = 0; c < ch; ++c) {
        const mcutl_fast_requant_t q = r->chan[c].q;
        const int32_t bias = r->chan[c].bias;
        const int32_t *const end2 = sum + (out_w & ~1);
        int8_t *o = out + c;
        for (; sum != end2; sum += 2, o += 2 * ch) {
            const int32_t v0 = mcutl_ssat16(mcutl_fast_requantize(sum[0] + bias, q));
            const int32_t v1 = mcutl_ssat16(mcutl_fast_requantize(sum[1] + bias, q));
            uint32_t v = mcutl_qadd16(mcutl_pack16x2(v0, v1), zp2);
            v = mcutl_min16x2(mcutl_max16x2(v, lo2), hi2);
            o[0] = (int8_t)mcutl_lo16(v);
            o[ch] = (int8_t)mcutl_hi16(v);
        }
        if (out_w & 1) {
            const int32_t v = mcutl_fast_requantize(*sum++ + bias, q) + r->out_zp;
            *o = (int8_t)mcutl_clamp32(v, r->act_min, r->act_max);
        }
    }
}

/* A one-row filter of five or six taps (1-D convolutions, KW = 5: an IMU model's): its
 * three weight pairs in registers, the sums as dw_sums_3x2 makes them. */
static __attribute__((noinline)) void dw_sums_1x3(const dw_out_row_t *r)
{
    const int32_t ch = r->ch, out_w = r->out_w, step = r->step, s0 = r->row_step[0];
    const int16_t *const row0 = r->row[0];
    const uint32_t *wp = r->packed;
    int32_t *sum = r->sums;
    int32_t c;
    for (c = 0; c < ch; ++c, wp += 3) {
        const uint32_t w0 = wp[0], w1 = wp[1], w2 = wp[2];
        const int16_t *t = row0 + c * s0;
        int32_t *const end = sum + out_w;
        for (; sum != end; ++sum, t += step) {
            int32_t acc = mcutl_smlad(mcutl_ld32(t), w0, 0);
            acc = mcutl_smlad(mcutl_ld32(t + 2), w1, acc);
            *sum = mcutl_smlad(mcutl_ld32(t + 4), w2, acc);
        }
    }
}

/* Any other filter: KH rows of `pairs` tap pairs, the sums as dw_sums_3x2 makes them
 * (the requantisation pass is shared). */
static __attribute__((noinline)) void dw_sums_any(const dw_out_row_t *r)
{
    const int32_t ch = r->ch, k_h = r->k_h, pairs = r->pairs, out_w = r->out_w;
    const int32_t step = r->step;
    int32_t *sum = r->sums;
    int32_t c, ox, ky, j;
    for (c = 0; c < ch; ++c) {
        const uint32_t *const wp = r->packed + c * k_h * pairs;
        for (ox = 0; ox < out_w; ++ox) {
            int32_t acc = 0;
            const uint32_t *wk = wp;
            for (ky = 0; ky < k_h; ++ky) {
                const int16_t *t = r->row[ky] + c * r->row_step[ky] + ox * step;
                for (j = 0; j < pairs; ++j, t += 2) {
                    acc = mcutl_smlad(mcutl_ld32(t), *wk++, acc);
                }
            }
            *sum++ = acc;
        }
    }
}

/* One output row, all channels. */
static void dw_out_row(const dw_out_row_t *r, int8_t *out)
{
    if (r->k_h == 3 && r->pairs == 2) {
        if (r->step == 1) {
            dw_sums_3x2_s1(r);
        } else if (r->step == 2) {
            dw_sums_3x2_s2(r);
        } else {
            dw_sums_3x2_any(r);
        }
    } else if (r->k_h == 1 && r->pairs == 3) {
        dw_sums_1x3(r);
    } else {
        dw_sums_any(r);
    }
    dw_requant_rows(r, out);
}

mcutl_status_t mcutl_depthwise_conv2d_s8_dsp(const mcutl_dw_conv_params_t *params,
                                             const mcutl_dims_t *input_dims,
                                             const int8_t *input,
                                             const mcutl_dims_t *filter_dims,
                                             const int8_t *filter, const int32_t *bias,
                                             const mcutl_dims_t *output_dims, int8_t *output,
                                             void *scratch)
{
    int32_t b, oy, c, ky, in_h, in_w, ch, k_h, out_h, out_w;
    dw_layout_t l;
    uint32_t *packed;
    int16_t *rows, *zeros;
    dw_chan_t *chan;
    dw_out_row_t r;
    int32_t slot_row[MCUTL_DW_DSP_MAX_KH];

    if (!mcutl_dw_args_ok(params, input_dims, input, filter_dims, filter, output_dims,
                          output)) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    if (!dw_fast_ok(params, filter_dims) ||
        !mcutl_fast_requant_ok(params->output_multiplier, params->output_shift, bias,
                               output_dims->c, (int64_t)filter_dims->h * filter_dims->w)) {
        return mcutl_depthwise_conv2d_s8(params, input_dims, input, filter_dims, filter, bias,
                                         output_dims, output);
    }
    if (scratch == 0 || ((uintptr_t)scratch & 3u) != 0) {
        return MCUTL_KERNEL_ARG_ERROR; /* its words are read with word loads */
    }
    in_h = input_dims->h;
    in_w = input_dims->w;
    ch = input_dims->c;
    k_h = filter_dims->h;
    out_h = output_dims->h;
    out_w = output_dims->w;
    l = dw_layout(params, input_dims, filter_dims, output_dims);
    packed = (uint32_t *)scratch;
    chan = (dw_chan_t *)(packed + l.w_words);
    r.sums = (int32_t *)(chan + ch);
    rows = (int16_t *)(r.sums + ch * out_w);
    zeros = rows + k_h * l.row_halfs;
    /* the row of zeros, and the padding columns of every ring slot (never written after) */
    memset(rows, 0, (size_t)(k_h * l.row_halfs + l.cols) * sizeof(int16_t));
    pack_weights(filter, k_h, filter_dims->w, ch, l.pairs, packed);

    for (c = 0; c < ch; ++c) {
        chan[c].q = mcutl_fast_requant_params(params->output_multiplier[c],
                                              params->output_shift[c]);
        chan[c].bias = bias != 0 ? bias[c] : 0;
    }
    r.packed = packed;
    r.chan = chan;
    r.ch = ch;
    r.k_h = k_h;
    r.pairs = l.pairs;
    r.out_w = out_w;
    r.step = params->stride_w;
    r.out_zp = params->output_zero_point;
    r.act_min = params->act_min;
    r.act_max = params->act_max;

    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *in_batch = input + b * in_h * in_w * ch;
        for (ky = 0; ky < k_h; ++ky) {
            slot_row[ky] = -1; /* no row transposed yet (rows are >= 0) */
        }
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t iy0 = oy * params->stride_h - params->pad_top;
            int32_t ky_first, ky_last;
            mcutl_window_taps(iy0, k_h, params->dilation_h, in_h, &ky_first, &ky_last);
            for (ky = 0; ky < k_h; ++ky) {
                const int32_t iy = iy0 + ky * params->dilation_h;
                /* consecutive rows (no vertical dilation) take distinct slots mod KH and
                 * stay in them while the window slides; dilated ones use slot ky */
                const int32_t slot = params->dilation_h == 1 ? iy % k_h : ky;
                int16_t *t = rows + slot * l.row_halfs;
                if (ky < ky_first || ky >= ky_last) {
                    r.row[ky] = zeros; /* in the padding: every channel reads zeros */
                    r.row_step[ky] = 0;
                    continue;
                }
                if (slot_row[slot] != iy) {
                    transpose_row(in_batch + iy * in_w * ch, in_w, ch,
                                  params->input_zero_point, params->pad_left, l.cols, t);
                    slot_row[slot] = iy;
                }
                r.row[ky] = t;
                r.row_step[ky] = l.cols;
            }
            dw_out_row(&r, output + (b * out_h + oy) * out_w * ch);
        }
    }
    return MCUTL_KERNEL_OK;
}
