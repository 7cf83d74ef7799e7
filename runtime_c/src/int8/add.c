/*
 * mcutl int8 kernels: element-wise ADD with per-input rescaling, bit-exact with
 * TFLite's reference int8 ADD (left shift 20, double rounding).
 */
#include "mcutl/int8.h"

#include "fixedpoint.h"

mcutl_status_t mcutl_add_s8(const mcutl_add_params_t *params, const int8_t *input1,
                            const int8_t *input2, int8_t *output, int32_t size)
{
    int32_t i;
    int32_t zp1, zp2, out_zp, ls;

    if (params == 0 || size < 0 || (size > 0 && (input1 == 0 || input2 == 0 || output == 0))) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    if (!mcutl_zero_point_ok(params->input1_zero_point) ||
        !mcutl_zero_point_ok(params->input2_zero_point) ||
        !mcutl_zero_point_ok(params->output_zero_point) ||
        !mcutl_act_range_ok(params->act_min, params->act_max)) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    /* (in - zp) spans 9 bits, so left_shift <= 22 keeps the pre-shifted input
     * inside int32 (TFLite uses 20). */
    if (params->left_shift < 0 || params->left_shift > 22 || params->input1_shift > 0 ||
        params->input1_shift < -31 || params->input2_shift > 0 || params->input2_shift < -31 ||
        params->output_shift > 0 || params->output_shift < -31) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    zp1 = params->input1_zero_point;
    zp2 = params->input2_zero_point;
    out_zp = params->output_zero_point;
    ls = params->left_shift;

    /* Element i of the output is written after both inputs' element i are read,
     * so any aliasing of output with the inputs is safe. */
    for (i = 0; i < size; ++i) {
        const int32_t a = ((int32_t)input1[i] - zp1) * ((int32_t)1 << ls);
        const int32_t c = ((int32_t)input2[i] - zp2) * ((int32_t)1 << ls);
        const int32_t sa = mcutl_requantize(a, params->input1_multiplier, params->input1_shift);
        const int32_t sc = mcutl_requantize(c, params->input2_multiplier, params->input2_shift);
        const int32_t v =
            mcutl_requantize(sa + sc, params->output_multiplier, params->output_shift) + out_zp;
        output[i] = (int8_t)mcutl_clamp32(v, params->act_min, params->act_max);
    }
    return MCUTL_KERNEL_OK;
}
