/*
 * ReLU / ReLU6 with 1-bit backward masks, the masked backward, and masks of
 * frozen int8 layers. Mask format: mcutl/f32.h (LSB first, 1 = gradient passes).
 */
#include <stdint.h>

#include "f32_internal.h"
#include "mcutl/f32.h"

/* out = clamp(x, 0, hi) (hi = 0: no upper bound); mask bit = 0 < x (< hi) */
static void clamp_with_mask(const float *input, int32_t size, float hi, float *output,
                            uint8_t *mask)
{
    int32_t i;
    uint32_t byte = 0;

    for (i = 0; i < size; i++) {
        const float x = input[i];
        int pass = x > 0.0f;
        float y = pass ? x : 0.0f; /* NaN -> 0 */
        if (hi > 0.0f && !(x < hi)) {
            pass = 0;
            y = x >= hi ? hi : y;
        }
        output[i] = y;
        if (mask != 0) {
            byte |= (uint32_t)pass << (i & 7);
            if ((i & 7) == 7) {
                mask[i >> 3] = (uint8_t)byte;
                byte = 0;
            }
        }
    }
    if (mask != 0 && (size & 7) != 0) {
        mask[size >> 3] = (uint8_t)byte;
    }
}

mcutl_f32_status_t mcutl_relu_f32(const float *input, int32_t size, float *output,
                                  uint8_t *mask)
{
    if (size < 0 || (size > 0 && (input == 0 || output == 0))) {
        return MCUTL_F32_ARG_ERROR;
    }
    clamp_with_mask(input, size, 0.0f, output, mask);
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_relu6_f32(const float *input, int32_t size, float *output,
                                   uint8_t *mask)
{
    if (size < 0 || (size > 0 && (input == 0 || output == 0))) {
        return MCUTL_F32_ARG_ERROR;
    }
    clamp_with_mask(input, size, 6.0f, output, mask);
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_clamp_f32(const float *input, int32_t size, float lo, float hi,
                                   float *output)
{
    int32_t i;

    if (size < 0 || (size > 0 && (input == 0 || output == 0)) || !(lo <= hi)) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (i = 0; i < size; i++) {
        const float x = input[i];
        output[i] = x < lo ? lo : (x > hi ? hi : x); /* NaN compares false: kept */
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_act_grad_input_f32(const float *grad_output, const uint8_t *mask,
                                            int32_t size, float *grad_input,
                                            int32_t accumulate)
{
    int32_t i;

    if (size < 0 || (size > 0 && (grad_output == 0 || mask == 0 || grad_input == 0))) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (i = 0; i < size; i++) {
        const int pass = (mask[i >> 3] >> (i & 7)) & 1;
        if (accumulate == 0) {
            grad_input[i] = pass ? grad_output[i] : 0.0f;
        } else if (pass) {
            grad_input[i] += grad_output[i];
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_act_mask_from_s8(const int8_t *output, int32_t size, int32_t act_min,
                                          int32_t act_max, int32_t mode, uint8_t *mask)
{
    int32_t i;
    uint32_t byte = 0;
    /* mode RELU: no upper bound (int8 values never reach 128) */
    const int32_t hi = mode == MCUTL_ACT_MASK_RELU ? 128 : act_max;

    if (size < 0 || (size > 0 && (output == 0 || mask == 0)) || act_min < -128 ||
        act_min > 127 || (mode != MCUTL_ACT_MASK_RELU && mode != MCUTL_ACT_MASK_RELU6) ||
        (mode == MCUTL_ACT_MASK_RELU6 && (act_max < act_min || act_max > 127))) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (i = 0; i < size; i++) {
        const int32_t q = output[i];
        byte |= (uint32_t)(q > act_min && q < hi) << (i & 7);
        if ((i & 7) == 7) {
            mask[i >> 3] = (uint8_t)byte;
            byte = 0;
        }
    }
    if ((size & 7) != 0) {
        mask[size >> 3] = (uint8_t)byte;
    }
    return MCUTL_F32_OK;
}
