/*
 * mcutl int8 kernels: FULLY_CONNECTED, bit-exact with TFLite's reference int8
 * fully connected kernel (per-tensor and per-channel weights).
 */
#include "mcutl/int8.h"

#include "dot.h"
#include "fixedpoint.h"

mcutl_status_t mcutl_fully_connected_s8(const mcutl_fc_params_t *params, int32_t batches,
                                        int32_t in_features, const int8_t *input,
                                        int32_t out_features, const int8_t *filter,
                                        const int32_t *bias, int8_t *output)
{
    int32_t b, o;
    int32_t in_zp, out_zp;

    if (params == 0 || input == 0 || filter == 0 || output == 0 ||
        params->output_multiplier == 0 || params->output_shift == 0) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    if (batches < 1 || in_features < 1 || out_features < 1) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    if (!mcutl_zero_point_ok(params->input_zero_point) ||
        !mcutl_zero_point_ok(params->output_zero_point) ||
        !mcutl_act_range_ok(params->act_min, params->act_max) ||
        !mcutl_shifts_ok(params->output_shift, out_features)) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    in_zp = params->input_zero_point;
    out_zp = params->output_zero_point;

    for (b = 0; b < batches; ++b) {
        const int8_t *in_row = input + b * in_features;
        for (o = 0; o < out_features; ++o) {
            const int8_t *f_row = filter + o * in_features;
            int32_t acc = 0;
            int32_t v;
            acc += mcutl_dot_s8(f_row, in_row, in_features, in_zp);
            if (bias != 0) {
                acc += bias[o];
            }
            v = mcutl_requantize(acc, params->output_multiplier[o], params->output_shift[o]) +
                out_zp;
            *output++ = (int8_t)mcutl_clamp32(v, params->act_min, params->act_max);
        }
    }
    return MCUTL_KERNEL_OK;
}
