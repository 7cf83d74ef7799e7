/*
 * mcutl int8 kernels: element-wise ADD for cores with the DSP extension, bit-exact with
 * the portable mcutl_add_s8 (add.c).
 *
 * The three requantisations of each element (both inputs, then their sum) are
 * mcutl_fast_requantize (dsp.h: SMMULR and three shift/adds instead of 64-bit
 * arithmetic). Its precondition holds for every element when the left shift is at most
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
