/*
 * mcutl int8 kernels: element-wise ADD for cores with the DSP extension, bit-exact with
 * the portable mcutl_add_s8 (add.c).
 *
 * The three requantisations of each element (both inputs, then their sum) are
 * mcutl_fast_requantize (dsp.h: SMMULR and three shift/adds instead of 64-bit
 * arithmetic), or with right shifts only (the common case) SMMLAR and two
 * (add_fast). Its precondition holds for every element when the left shift is at most
 * 20 (TFLite's): |in - zp| <= 255, so each pre-shifted input is below 255 * 2^20 < 2^28,
 * a requantisation by a multiplier below 1 never grows it, and the sum of two stays
 * below 2^29. Other parameters run the portable kernel.
 */
#include "mcutl/int8.h"

#include "dsp.h"
#include "fixedpoint.h"

static int fast_ok(const mcutl_add_params_t *p)
{
    return p->left_shift >= 0 && p->left_shift <= 20 && p->input1_shift >= -30 &&
           p->input1_shift <= 0 && p->input2_shift >= -30 && p->input2_shift <= 0 &&
           p->output_shift >= -30 && p->output_shift <= 0 &&
           p->input1_multiplier != INT32_MIN && p->input2_multiplier != INT32_MIN &&
           p->output_multiplier != INT32_MIN;
}

/*
 * The common case in fewer instructions: right shifts only, 0 .. 30 for the inputs (TFLite
 * gives the input of the larger scale multiplier 2^30, shift 0) and 1 .. 22 for the
 * output. A requantisation of a with right shift e >= 1 is then
 * floor((SMMULR(2a, m) + 2^(e - 1) - [a < 0]) / 2^e) (as in dsp.h's output stage: SMMLAR
 * adds the constant, and [a < 0] stands for [SMMULR(2a, m) < 0], the quotient being 0
 * where they differ), with e = 0 just SMMULR(2a, m); the output's constant also takes
 * zero point * 2^e. The constants of one input: its zero point, 1 + left shift,
 * multiplier, rounding constant and shift.
 */
typedef struct {
    int32_t zp, pre, multiplier, round, shift;
} add_in_t;

/* One input's requantisation; `exact`: its shift is 0. */
MCUTL_INLINE int32_t add_input(int32_t x, const add_in_t *q, int exact)
{
    const int32_t u = (int32_t)((uint32_t)(x - q->zp) << q->pre);
    int32_t t;
    if (exact) {
        return mcutl_smmulr(u, q->multiplier);
    }
    t = mcutl_smmlar(u, q->multiplier, q->round) - (int32_t)((uint32_t)u >> 31);
    return t < 0 ? ~(~t >> q->shift) : (t >> q->shift);
}

static add_in_t add_in_params(int32_t zp, int32_t left_shift, int32_t multiplier,
                              int32_t shift)
{
    add_in_t q;
    q.zp = zp;
    q.pre = left_shift + 1;
    q.multiplier = multiplier;
    q.round = shift < 0 ? (int32_t)(UINT32_C(1) << (-shift - 1)) : 0;
    q.shift = -shift;
    return q;
}

/* The loop of the common case: q1's input (in1) first; `exact1`: its shift is 0;
 * `full`: the activation range is all of int8 (one SSAT). */
MCUTL_INLINE void add_fast(const mcutl_add_params_t *p, add_in_t q1, add_in_t q2,
                           const int8_t *in1, const int8_t *in2, int8_t *output,
                           int32_t size, int exact1, int full)
{
    const mcutl_out_requant_t qo = mcutl_out_requant_params(
        p->output_multiplier, p->output_shift, p->output_zero_point, 1);
    const int32_t lo = p->act_min, hi = p->act_max;
    int8_t *const end = output + size;
    /* element i of the output is written after both inputs' element i are read, so the
     * output may alias the inputs, as for the portable kernel */
    while (output != end) {
        const int32_t sum = add_input(*in1++, &q1, exact1) + add_input(*in2++, &q2, 0);
        const int32_t v = mcutl_out_requantize_fast(2 * sum, &qo);
        *output++ = (int8_t)(full ? mcutl_ssat8(v) : mcutl_clamp32(v, lo, hi));
    }
}

static __attribute__((noinline)) void add_fast_exact(const mcutl_add_params_t *p,
                                                     add_in_t q1, add_in_t q2,
                                                     const int8_t *in1, const int8_t *in2,
                                                     int8_t *output, int32_t size)
{
    add_fast(p, q1, q2, in1, in2, output, size, 1, 1);
}

static __attribute__((noinline)) void add_fast_right(const mcutl_add_params_t *p,
                                                     add_in_t q1, add_in_t q2,
                                                     const int8_t *in1, const int8_t *in2,
                                                     int8_t *output, int32_t size)
{
    add_fast(p, q1, q2, in1, in2, output, size, 0, 1);
}

static __attribute__((noinline)) void add_fast_clamp(const mcutl_add_params_t *p,
                                                     add_in_t q1, add_in_t q2,
                                                     const int8_t *in1, const int8_t *in2,
                                                     int8_t *output, int32_t size)
{
    add_fast(p, q1, q2, in1, in2, output, size, 0, 0);
}

/* Whether add_fast takes the layer, and runs it (the input of shift 0, if any, first:
 * addition commutes). */
static int add_fast_run(const mcutl_add_params_t *p, const int8_t *input1,
                        const int8_t *input2, int8_t *output, int32_t size)
{
    add_in_t q1, q2;
    if (p->output_shift > -1 || p->output_shift < -22 ||
        (p->input1_shift == 0 && p->input2_shift == 0)) {
        return 0;
    }
    q1 = add_in_params(p->input1_zero_point, p->left_shift, p->input1_multiplier,
                       p->input1_shift);
    q2 = add_in_params(p->input2_zero_point, p->left_shift, p->input2_multiplier,
                       p->input2_shift);
    if (p->act_min != -128 || p->act_max != 127) {
        if (p->input1_shift == 0 || p->input2_shift == 0) {
            return 0;
        }
        add_fast_clamp(p, q1, q2, input1, input2, output, size);
    } else if (p->input1_shift == 0) {
        add_fast_exact(p, q1, q2, input1, input2, output, size);
    } else if (p->input2_shift == 0) {
        add_fast_exact(p, q2, q1, input2, input1, output, size);
    } else {
        add_fast_right(p, q1, q2, input1, input2, output, size);
    }
    return 1;
}

mcutl_status_t mcutl_add_s8_dsp(const mcutl_add_params_t *params, const int8_t *input1,
                                const int8_t *input2, int8_t *output, int32_t size)
{
    mcutl_fast_requant_t q1, q2, qo;
    int32_t zp1, zp2, out_zp, lo, hi, i;

    if (params == 0 || !fast_ok(params)) { /* the portable kernel checks the arguments */
        return mcutl_add_s8(params, input1, input2, output, size);
    }
    if (size < 0 || (size > 0 && (input1 == 0 || input2 == 0 || output == 0)) ||
        !mcutl_zero_point_ok(params->input1_zero_point) ||
        !mcutl_zero_point_ok(params->input2_zero_point) ||
        !mcutl_zero_point_ok(params->output_zero_point) ||
        !mcutl_act_range_ok(params->act_min, params->act_max)) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    if (add_fast_run(params, input1, input2, output, size)) {
        return MCUTL_KERNEL_OK;
    }
    /* the inputs' left shift folded into their requantisations' pre-shift */
    q1 = mcutl_fast_requant_params(params->input1_multiplier, params->input1_shift);
    q1.pre_shift += params->left_shift;
    q2 = mcutl_fast_requant_params(params->input2_multiplier, params->input2_shift);
    q2.pre_shift += params->left_shift;
    qo = mcutl_fast_requant_params(params->output_multiplier, params->output_shift);
    zp1 = params->input1_zero_point;
    zp2 = params->input2_zero_point;
    out_zp = params->output_zero_point;
    lo = params->act_min;
    hi = params->act_max;
    /* element i of the output is written after both inputs' element i are read, so the
     * output may alias the inputs, as for the portable kernel */
    for (i = 0; i < size; ++i) {
        const int32_t sa = mcutl_fast_requantize(input1[i] - zp1, q1);
        const int32_t sc = mcutl_fast_requantize(input2[i] - zp2, q2);
        int32_t v = mcutl_fast_requantize(sa + sc, qo) + out_zp;
        v = v < lo ? lo : v;
        output[i] = (int8_t)(v > hi ? hi : v);
    }
    return MCUTL_KERNEL_OK;
}
