/*
 * mcutl int8 kernels: standalone RELU / RELU6 / RELU_N1_TO_1, which in TFLite's
 * int8 kernels requantise from the input to the output quantisation.
 */
#include "mcutl/int8.h"

#include "fixedpoint.h"

mcutl_status_t mcutl_relu_s8(const mcutl_relu_params_t *params, const int8_t *input,
                             int8_t *output, int32_t size)
{
    int32_t i;

    if (params == 0 || size < 0 || (size > 0 && (input == 0 || output == 0))) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    if (!mcutl_zero_point_ok(params->input_zero_point) ||
        !mcutl_zero_point_ok(params->output_zero_point) ||
        !mcutl_act_range_ok(params->act_min, params->act_max) ||
        !mcutl_shifts_ok(&params->output_shift, 1)) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    for (i = 0; i < size; ++i) {
        const int32_t v = mcutl_requantize((int32_t)input[i] - params->input_zero_point,
                                           params->output_multiplier, params->output_shift) +
                          params->output_zero_point;
        output[i] = (int8_t)mcutl_clamp32(v, params->act_min, params->act_max);
    }
    return MCUTL_KERNEL_OK;
}
