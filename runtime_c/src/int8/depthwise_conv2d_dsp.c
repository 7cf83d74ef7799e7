/*
 * mcutl int8 kernels: DEPTHWISE_CONV_2D for cores with the DSP extension (Cortex-M4/M7),
 * bit-exact with the portable mcutl_depthwise_conv2d_s8 (depthwise_conv2d.c).
 *
 * SMLAD multiplies two int16 pairs and adds both products to one sum, so the two
 * products must belong to the same output: two horizontally adjacent taps of one
 * channel. In NHWC those inputs are C bytes apart, so the kernel keeps the input rows a
 * window needs transposed in the scratch, channel by channel: T[row][c][col] = input as
 * int16 (SXTB16 splits a word of four channels into two pairs of them), the padding
 * columns the input zero point. Two adjacent taps are then one 32-bit load, and their
 * weights, packed once per call as doubled (w[kx], w[kx + 1]) pairs (an odd last tap
 * paired with 0), one register. The zero point is not subtracted per tap: each channel's
 * bias absorbs zero point * the sum of its weights, and the padding holds the zero point
 * itself (so that it adds nothing); the doubled weights make the sums what the output
 * stage of dsp.h takes (mcutl_out_requantize).
 *
 * Each input row is transposed once per call: the KH rows a window spans are a ring
 * (row iy in slot iy mod KH), and the next output row transposes only the rows it adds
 * (with vertical dilation, slot ky: rows are transposed again when they change).
 * The common 3 x 3 filter (stride 1 or 2 along the width) computes four outputs of a
 * channel per pass, its input pairs shared between them, and requantises them in
 * registers; an output row whose window leaves the image vertically, and any other
 * filter, take a general loop over the rows inside. Layers it does not cover (depth
 * multiplier > 1, horizontal dilation, accumulators its fast requantisation cannot prove
 * exact) run the portable kernel.
 */
#include "mcutl/int8.h"

#include "args.h"
#include "dsp.h"
#include "fixedpoint.h"
#include "window.h"

/* Filter heights the kernel takes (its table of rows is on the stack). */
#define MCUTL_DW_DSP_MAX_KH 16

/* The scratch: per channel a record (its dw_chan_t, then its KH * pairs weight words:
 * what a channel's outputs read, behind one pointer), 4 * C * W_out bytes not used any
 * more (they held an output row's sums; kept so that arena plans stay the same), the KH
 * transposed rows (a window row in the padding: a slot of zero points, since the bias
 * counts every tap's zero point), and `cols` int16 not used any more either. */
typedef struct {
    int32_t pairs;    /* ceil(KW / 2): tap pairs per filter row */
    int32_t cols;     /* int16 columns of a transposed row (even) */
    int32_t w_words;  /* packed weights: C * KH * pairs words */
    int32_t rec_words; /* one channel's record: dw_chan_t and KH * pairs weight words */
    int32_t row_halfs; /* int16 of one transposed row: C * cols */
} dw_layout_t;

/* Per output channel, computed once per call: its requantisation and bias (the head of
 * its record, the weights follow). */
typedef struct {
    mcutl_out_requant_t q;
    int32_t bias; /* 2 * (bias - input zero point * the sum of the channel's weights) */
} dw_chan_t;

#define DW_CHAN_WORDS ((int32_t)(sizeof(dw_chan_t) / sizeof(uint32_t)))

/* The weight words of a channel's record. */
static inline const uint32_t *dw_weights(const uint32_t *rec)
{
    return rec + DW_CHAN_WORDS;
}

static inline const dw_chan_t *dw_chan(const uint32_t *rec)
{
    return (const dw_chan_t *)(const void *)rec;
}

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
    l.rec_words = DW_CHAN_WORDS + filter_dims->h * l.pairs;
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

/* The records: per channel its bias, 2 * (bias - zero point * sum of the weights), and
 * weights [1, KH, KW, C] as, per filter row, (2 w[kx], 2 w[kx + 1]) int16 pairs (the
 * requantisation is filled in by the caller). */
static void pack_weights(const int8_t *filter, const int32_t *bias, int32_t zp, int32_t k_h,
                         int32_t k_w, int32_t ch, int32_t pairs, int32_t words,
                         uint32_t *rec)
{
    const int32_t odd = k_w & 1; /* the last pair of a row has one tap */
    int32_t c, ky, j;
    for (c = 0; c < ch; ++c, rec += words) {
        const int8_t *t = filter + c; /* tap (ky, kx) at t[(ky * KW + kx) * C] */
        uint32_t *w = rec + DW_CHAN_WORDS;
        uint32_t sum2 = 0;
        if (k_w == 3) { /* the common filter: (w0, w1), (w2, 0) per row, unrolled */
            for (ky = 0; ky < k_h; ++ky, t += 3 * ch) {
                const int32_t w0 = 2 * t[0], w1 = 2 * t[ch], w2 = 2 * t[2 * ch];
                w[0] = mcutl_pack16x2(w0, w1);
                w[1] = mcutl_pack16x2(w2, 0);
                w += 2;
                sum2 += (uint32_t)(w0 + w1 + w2);
            }
        }
        for (ky = k_w == 3 ? k_h : 0; ky < k_h; ++ky) {
            for (j = 0; j < pairs - odd; ++j, t += 2 * ch) {
                const int32_t lo = 2 * t[0], hi = 2 * t[ch];
                *w++ = mcutl_pack16x2(lo, hi);
                sum2 += (uint32_t)(lo + hi);
            }
            if (odd) {
                const int32_t lo = 2 * t[0];
                *w++ = mcutl_pack16x2(lo, 0);
                sum2 += (uint32_t)lo;
                t += ch;
            }
        }
        /* modular: the sums end exact however the terms are grouped */
        ((dw_chan_t *)(void *)rec)->bias =
            (int32_t)(2u * (uint32_t)(bias != 0 ? bias[c] : 0) - (uint32_t)zp * sum2);
    }
}

/* Input row iy (inside the image) -> T[c][col], col = x + pad_left (the other columns
 * are the padding, set once per call: every row leaves them alone). */
static void transpose_row(const int8_t *row, int32_t in_w, int32_t ch, int32_t pad_left,
                          int32_t cols, int16_t *t)
{
    int32_t c, x;
    t += pad_left;
    if ((ch & 3) == 0) {
        /* two columns of four channels per step: SXTB16 splits each word of four into
         * (c, c+2) and (c+1, c+3), PKHBT/PKHTB pair the two columns of one channel, and
         * a channel's two columns are one word store */
        for (x = 0; x + 2 <= in_w; x += 2) {
            const int8_t *src = row + x * ch;
            int16_t *dst = t + x;
            for (c = 0; c < ch; c += 4, dst += 4 * cols) {
                const uint32_t u = mcutl_ld32(src + c), v = mcutl_ld32(src + ch + c);
                const uint32_t ue = mcutl_sxtb16(u), ve = mcutl_sxtb16(v);
                const uint32_t uo = mcutl_sxtb16_ror8(u), vo = mcutl_sxtb16_ror8(v);
                mcutl_st32(dst, mcutl_pack16x2((int32_t)ue, (int32_t)ve));
                mcutl_st32(dst + cols, mcutl_pack16x2((int32_t)uo, (int32_t)vo));
                mcutl_st32(dst + 2 * cols, mcutl_pack_hi16x2(ue, ve));
                mcutl_st32(dst + 3 * cols, mcutl_pack_hi16x2(uo, vo));
            }
        }
        if (x < in_w) { /* an odd last column */
            const int8_t *src = row + x * ch;
            int16_t *dst = t + x;
            for (c = 0; c < ch; c += 4, dst += 4 * cols) {
                const uint32_t w = mcutl_ld32(src + c);
                const uint32_t e = mcutl_sxtb16(w), o = mcutl_sxtb16_ror8(w);
                dst[0] = (int16_t)mcutl_lo16(e);
                dst[cols] = (int16_t)mcutl_lo16(o);
                dst[2 * cols] = (int16_t)mcutl_hi16(e);
                dst[3 * cols] = (int16_t)mcutl_hi16(o);
            }
        }
        return;
    }
    for (x = 0; x < in_w; ++x) {
        const int8_t *src = row + x * ch;
        for (c = 0; c < ch; ++c) {
            t[c * cols + x] = src[c];
        }
    }
}

/* What a ring slot holds besides an input row: nothing yet, or the zero point (a
 * window row in the padding). */
#define DW_NO_ROW INT32_MIN
#define DW_PAD_ROW (INT32_MIN + 1)

/* A ring slot of `halfs` int16 (even, 4-byte aligned) filled with the zero point. */
static void fill_zp(int16_t *t, int32_t halfs, int32_t zp)
{
    const uint32_t zp2 = mcutl_pack16x2(zp, zp);
    uint32_t *w = (uint32_t *)(void *)t;
    uint32_t *const end = w + halfs / 2;
    for (; w != end; ++w) {
        *w = zp2;
    }
}

/* One output row, all channels: what the row functions read. */
typedef struct {
    const int16_t *row[MCUTL_DW_DSP_MAX_KH]; /* window row ky, at channel 0 */
    const uint32_t *rec;                     /* the channel records */
    int32_t rec_words;                       /* words per record */
    int32_t ch, k_h, pairs, out_w, step;     /* step: int16 columns between outputs */
    int32_t cols;                            /* int16 between channels in a row */
    int32_t act_min, act_max;
} dw_out_row_t;

/* One output from a doubled sum, by the output stage of dsp.h: `fast`, its fast form and
 * the activation range all of int8 (one SSAT), else the general form and the clamp. */
MCUTL_INLINE int8_t dw_out(int32_t acc2, const mcutl_out_requant_t *q, int fast,
                           int32_t lo, int32_t hi)
{
    if (fast) {
        return (int8_t)mcutl_ssat8(mcutl_out_requantize_fast(acc2, q));
    }
    return (int8_t)mcutl_clamp32(mcutl_out_requantize(acc2, q), lo, hi);
}

/* A word from a 4-byte aligned address (GCC pairs two such loads into one LDRD). */
static inline uint32_t ld32a(const int16_t *p)
{
    return *(const uint32_t *)(const void *)p;
}

/*
 * One filter row's share of four outputs of a channel: *t at the first output's window
 * row (4-byte aligned), w01 and w2_ the row's weight pairs. With W_k the input pair at
 * column k, output j takes W_{step j} * w01 + W_{step j + 2} * w2_, so the four outputs
 * read six pairs at stride 1 (W_0 .. W_5, two of them shared) and five at stride 2
 * (W_0, W_2 .. W_8, three shared): eight SMLAD for either. The first LDRD advances *t to
 * the next four outputs (the later loads are relative to that). The barriers keep each
 * load next to its use: hoisted together they need more registers than there are.
 */
MCUTL_INLINE void row_x4(const int16_t **t, uint32_t w01, uint32_t w2_, int32_t step,
                         int32_t *a0, int32_t *a1, int32_t *a2, int32_t *a3)
{
    const uint32_t *p = (const uint32_t *)(const void *)*t;
    uint32_t x, y;
    if (step == 1) {
        const int16_t *n;
        p = mcutl_ld2x32_inc(p, &x, &y); /* W_0, W_2; p at column 4 */
        n = (const int16_t *)(const void *)p;
        *a0 = mcutl_smlad(x, w01, *a0);
        *a0 = mcutl_smlad(y, w2_, *a0);
        *a2 = mcutl_smlad(y, w01, *a2);
        MCUTL_SCHED_BARRIER();
        x = p[0]; /* W_4 */
        *a2 = mcutl_smlad(x, w2_, *a2);
        MCUTL_SCHED_BARRIER();
        x = mcutl_ld32(n - 3); /* W_1 */
        y = mcutl_ld32(n - 1); /* W_3 */
        *a1 = mcutl_smlad(x, w01, *a1);
        *a1 = mcutl_smlad(y, w2_, *a1);
        *a3 = mcutl_smlad(y, w01, *a3);
        MCUTL_SCHED_BARRIER();
        x = mcutl_ld32(n + 1); /* W_5 */
        *a3 = mcutl_smlad(x, w2_, *a3);
    } else { /* step == 2 */
        p = mcutl_ld2x32_inc16(p, &x, &y); /* W_0, W_2; p at column 8 */
        *a0 = mcutl_smlad(x, w01, *a0);
        *a0 = mcutl_smlad(y, w2_, *a0);
        *a1 = mcutl_smlad(y, w01, *a1);
        MCUTL_SCHED_BARRIER();
        x = p[-2]; /* W_4 */
        y = p[-1]; /* W_6 */
        *a1 = mcutl_smlad(x, w2_, *a1);
        *a2 = mcutl_smlad(x, w01, *a2);
        *a2 = mcutl_smlad(y, w2_, *a2);
        *a3 = mcutl_smlad(y, w01, *a3);
        MCUTL_SCHED_BARRIER();
        x = p[0]; /* W_8 */
        *a3 = mcutl_smlad(x, w2_, *a3);
    }
    MCUTL_SCHED_BARRIER();
    *t = (const int16_t *)(const void *)p;
}

/* Two outputs of a channel (the part of row_x4 they need: four or three loads, four
 * SMLAD), *t advanced past them. */
MCUTL_INLINE void row_x2(const int16_t **t, uint32_t w01, uint32_t w2_, int32_t step,
                         int32_t *a0, int32_t *a1)
{
    const int16_t *p = *t;
    const uint32_t x0 = ld32a(p), x2 = ld32a(p + 2);
    *a0 = mcutl_smlad(x0, w01, *a0);
    *a0 = mcutl_smlad(x2, w2_, *a0);
    if (step == 1) {
        *a1 = mcutl_smlad(mcutl_ld32(p + 1), w01, *a1);
        *a1 = mcutl_smlad(mcutl_ld32(p + 3), w2_, *a1);
    } else {
        *a1 = mcutl_smlad(x2, w01, *a1);
        *a1 = mcutl_smlad(ld32a(p + 4), w2_, *a1);
    }
    MCUTL_SCHED_BARRIER();
    *t = p + 2 * step;
}

/*
 * The 3 x 3 filter (or 3 x 4) at stride `step` (1 or 2, a constant in the instantiations
 * below): per channel, four outputs per pass (three rows of row_x4: 15 or 9 loads and 24
 * SMLAD for 36 MACs, then the output stage in registers), then two, then one. Everything
 * a pass needs of its channel is behind one pointer (the record), and the row pointers
 * step on to the next channel by what the outputs left of the row (`back`), so that the
 * loops' values fit in registers.
 */
MCUTL_INLINE void dw_row_3x3(const dw_out_row_t *r, int8_t *out, int32_t step, int fast)
{
    const int32_t ch = r->ch, out_w = r->out_w, lo = r->act_min, hi = r->act_max;
    const int32_t back = r->cols - out_w * step; /* to the next channel's row */
    const int16_t *p0 = r->row[0], *p1 = r->row[1], *p2 = r->row[2];
    const uint32_t *rec = r->rec;
    const int32_t words = r->rec_words;
    int8_t *const out_end = out + ch;
    for (; out != out_end; ++out, rec += words, p0 += back, p1 += back, p2 += back) {
        const uint32_t *const w = dw_weights(rec);
        int8_t *o = out;
        int8_t *const o_end4 = out + (out_w & ~3) * ch;
        while (o != o_end4) {
            int32_t a0 = dw_chan(rec)->bias, a1 = a0, a2 = a0, a3 = a0;
            row_x4(&p0, w[0], w[1], step, &a0, &a1, &a2, &a3);
            row_x4(&p1, w[2], w[3], step, &a0, &a1, &a2, &a3);
            row_x4(&p2, w[4], w[5], step, &a0, &a1, &a2, &a3);
            {
                /* the constants loaded before the int8 stores (which C lets alias them) */
                const mcutl_out_requant_t q = dw_chan(rec)->q;
                const int32_t c = r->ch;
                const int8_t v0 = dw_out(a0, &q, fast, lo, hi);
                const int8_t v1 = dw_out(a1, &q, fast, lo, hi);
                const int8_t v2 = dw_out(a2, &q, fast, lo, hi);
                const int8_t v3 = dw_out(a3, &q, fast, lo, hi);
                o[0] = v0;
                o[c] = v1;
                o += 2 * c;
                o[0] = v2;
                o[c] = v3;
                o += 2 * c;
            }
        }
        if (out_w & 2) {
            int32_t a0 = dw_chan(rec)->bias, a1 = a0;
            row_x2(&p0, w[0], w[1], step, &a0, &a1);
            row_x2(&p1, w[2], w[3], step, &a0, &a1);
            row_x2(&p2, w[4], w[5], step, &a0, &a1);
            {
                const mcutl_out_requant_t q = dw_chan(rec)->q;
                const int32_t c = r->ch;
                const int8_t v0 = dw_out(a0, &q, fast, lo, hi);
                const int8_t v1 = dw_out(a1, &q, fast, lo, hi);
                o[0] = v0;
                o[c] = v1;
                o += 2 * c;
            }
        }
        if (out_w & 1) {
            int32_t a = mcutl_smlad(mcutl_ld32(p0), w[0], dw_chan(rec)->bias);
            a = mcutl_smlad(mcutl_ld32(p0 + 2), w[1], a);
            a = mcutl_smlad(mcutl_ld32(p1), w[2], a);
            a = mcutl_smlad(mcutl_ld32(p1 + 2), w[3], a);
            a = mcutl_smlad(mcutl_ld32(p2), w[4], a);
            a = mcutl_smlad(mcutl_ld32(p2 + 2), w[5], a);
            *o = dw_out(a, &dw_chan(rec)->q, fast, lo, hi);
            p0 += step;
            p1 += step;
            p2 += step;
        }
    }
}

static __attribute__((noinline)) void dw_row_3x3_s1(const dw_out_row_t *r, int8_t *out)
{
    dw_row_3x3(r, out, 1, 1);
}

static __attribute__((noinline)) void dw_row_3x3_s2(const dw_out_row_t *r, int8_t *out)
{
    dw_row_3x3(r, out, 2, 1);
}

static __attribute__((noinline)) void dw_row_3x3_s1_general(const dw_out_row_t *r,
                                                            int8_t *out)
{
    dw_row_3x3(r, out, 1, 0);
}

static __attribute__((noinline)) void dw_row_3x3_s2_general(const dw_out_row_t *r,
                                                            int8_t *out)
{
    dw_row_3x3(r, out, 2, 0);
}

/* A one-row filter of five or six taps (1-D convolutions, KW = 5: an IMU model's): per
 * channel its three weight pairs in registers, per output three loads and SMLAD. */
MCUTL_INLINE void dw_row_1x3(const dw_out_row_t *r, int8_t *out, int fast)
{
    const int32_t ch = r->ch, out_w = r->out_w, step = r->step;
    const int32_t lo = r->act_min, hi = r->act_max, words = r->rec_words;
    const int32_t back = r->cols - out_w * step; /* to the next channel's row */
    const int16_t *p = r->row[0];
    const uint32_t *rec = r->rec;
    int8_t *const out_end = out + ch;
    for (; out != out_end; ++out, rec += words, p += back) {
        const uint32_t *const w = dw_weights(rec);
        const uint32_t w0 = w[0], w1 = w[1], w2 = w[2];
        const mcutl_out_requant_t q = dw_chan(rec)->q;
        const int32_t bias = dw_chan(rec)->bias;
        int8_t *o = out;
        int8_t *const o_end = out + out_w * ch;
        for (; o != o_end; o += ch, p += step) {
            int32_t a = mcutl_smlad(mcutl_ld32(p), w0, bias);
            a = mcutl_smlad(mcutl_ld32(p + 2), w1, a);
            a = mcutl_smlad(mcutl_ld32(p + 4), w2, a);
            *o = dw_out(a, &q, fast, lo, hi);
        }
    }
}

static __attribute__((noinline)) void dw_row_1x3_fast(const dw_out_row_t *r, int8_t *out)
{
    dw_row_1x3(r, out, 1);
}

static __attribute__((noinline)) void dw_row_1x3_general(const dw_out_row_t *r, int8_t *out)
{
    dw_row_1x3(r, out, 0);
}

/* Any filter and stride: per output, every tap pair. */
MCUTL_INLINE void dw_row_any(const dw_out_row_t *r, int8_t *out, int fast)
{
    const int32_t ch = r->ch, k_h = r->k_h, pairs = r->pairs, out_w = r->out_w;
    const int32_t step = r->step, lo = r->act_min, hi = r->act_max;
    const uint32_t *rec = r->rec;
    int32_t c, ox, ky, j;
    for (c = 0; c < ch; ++c, rec += r->rec_words) {
        const uint32_t *const wc = dw_weights(rec);
        const int32_t bias = dw_chan(rec)->bias;
        for (ox = 0; ox < out_w; ++ox) {
            int32_t acc = bias;
            const uint32_t *wk = wc;
            for (ky = 0; ky < k_h; ++ky) {
                const int16_t *t = r->row[ky] + c * r->cols + ox * step;
                for (j = 0; j < pairs; ++j, t += 2) {
                    acc = mcutl_smlad(mcutl_ld32(t), *wk++, acc);
                }
            }
            out[ox * ch + c] = dw_out(acc, &dw_chan(rec)->q, fast, lo, hi);
        }
    }
}

static __attribute__((noinline)) void dw_row_any_fast(const dw_out_row_t *r, int8_t *out)
{
    dw_row_any(r, out, 1);
}

static __attribute__((noinline)) void dw_row_any_general(const dw_out_row_t *r, int8_t *out)
{
    dw_row_any(r, out, 0);
}

/* One output row, all channels. */
static void dw_out_row(const dw_out_row_t *r, int fast, int8_t *out)
{
    if (r->k_h == 3 && r->pairs == 2 && (r->step == 1 || r->step == 2)) {
        if (r->step == 1) {
            (fast ? dw_row_3x3_s1 : dw_row_3x3_s1_general)(r, out);
        } else {
            (fast ? dw_row_3x3_s2 : dw_row_3x3_s2_general)(r, out);
        }
    } else if (r->k_h == 1 && r->pairs == 3) {
        (fast ? dw_row_1x3_fast : dw_row_1x3_general)(r, out);
    } else {
        (fast ? dw_row_any_fast : dw_row_any_general)(r, out);
    }
}

mcutl_status_t mcutl_depthwise_conv2d_s8_dsp(const mcutl_dw_conv_params_t *params,
                                             const mcutl_dims_t *input_dims,
                                             const int8_t *input,
                                             const mcutl_dims_t *filter_dims,
                                             const int8_t *filter, const int32_t *bias,
                                             const mcutl_dims_t *output_dims, int8_t *output,
                                             void *scratch)
{
    int32_t b, oy, c, ky, in_h, in_w, ch, k_h, out_h, out_w, zp;
    dw_layout_t l;
    uint32_t *rec;
    int16_t *rows;
    dw_out_row_t r;
    int fast, form;
    int32_t slot_row[MCUTL_DW_DSP_MAX_KH];

    if (!mcutl_dw_args_ok(params, input_dims, input, filter_dims, filter, output_dims,
                          output)) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    form = !dw_fast_ok(params, filter_dims) ? 0 : mcutl_out_requant_form(
        params->output_multiplier, params->output_shift, bias, output_dims->c,
        (int64_t)filter_dims->h * filter_dims->w, params->act_min, params->act_max);
    if (form == 0) {
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
    zp = params->input_zero_point;
    l = dw_layout(params, input_dims, filter_dims, output_dims);
    rec = (uint32_t *)scratch;
    rows = (int16_t *)(rec + ch * l.rec_words + ch * out_w);
    /* the padding columns of every ring slot hold the zero point (the rows transposed
     * into a slot leave them alone) */
    fill_zp(rows, k_h * l.row_halfs, zp);
    pack_weights(filter, bias, zp, k_h, filter_dims->w, ch, l.pairs, l.rec_words, rec);
    fast = form == 2;
    for (c = 0; c < ch; ++c) {
        ((dw_chan_t *)(void *)(rec + c * l.rec_words))->q = mcutl_out_requant_params(
            params->output_multiplier[c], params->output_shift[c],
            params->output_zero_point, fast);
    }
    r.rec = rec;
    r.rec_words = l.rec_words;
    r.ch = ch;
    r.k_h = k_h;
    r.pairs = l.pairs;
    r.out_w = out_w;
    r.step = params->stride_w;
    r.cols = l.cols;
    r.act_min = params->act_min;
    r.act_max = params->act_max;

    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *in_batch = input + b * in_h * in_w * ch;
        for (ky = 0; ky < k_h; ++ky) {
            slot_row[ky] = DW_NO_ROW;
        }
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t iy0 = oy * params->stride_h - params->pad_top;
            int32_t ky_first, ky_last;
            mcutl_window_taps(iy0, k_h, params->dilation_h, in_h, &ky_first, &ky_last);
            for (ky = 0; ky < k_h; ++ky) {
                const int32_t iy = iy0 + ky * params->dilation_h;
                const int inside = ky >= ky_first && ky < ky_last;
                /* consecutive rows (no vertical dilation) take distinct slots mod KH and
                 * stay in them while the window slides (a row in the padding too: its
                 * slot is filled with the zero point); dilated ones use slot ky */
                const int32_t slot = params->dilation_h == 1 ? ((iy % k_h) + k_h) % k_h : ky;
                const int32_t want = inside ? iy : DW_PAD_ROW;
                int16_t *t = rows + slot * l.row_halfs;
                if (slot_row[slot] != want) {
                    if (inside) {
                        transpose_row(in_batch + iy * in_w * ch, in_w, ch, params->pad_left,
                                      l.cols, t);
                    } else {
                        fill_zp(t, l.row_halfs, zp);
                    }
                    slot_row[slot] = want;
                }
                r.row[ky] = t;
            }
            dw_out_row(&r, fast, output + (b * out_h + oy) * out_w * ch);
        }
    }
    return MCUTL_KERNEL_OK;
}
