/*
 * float32 linear layer (weight [out, in]): forward, gradients, and the input
 * gradient of a frozen int8 FULLY_CONNECTED. Semantics: mcutl/f32.h.
 */
#include <stdint.h>

#include "f32_internal.h"
#include "mcutl/f32.h"

/* 1 if batches, in_features, out_features >= 1 and every matrix fits int32 */
static int linear_shape_ok(int32_t batches, int32_t in_features, int32_t out_features)
{
    return batches >= 1 && in_features >= 1 && out_features >= 1 &&
           f32_mul_count(batches, in_features) >= 0 &&
           f32_mul_count(batches, out_features) >= 0 &&
           f32_mul_count(out_features, in_features) >= 0;
}

mcutl_f32_status_t mcutl_linear_f32(int32_t batches, int32_t in_features, const float *input,
                                    int32_t out_features, const float *weight,
                                    const float *bias, float *output)
{
    int32_t b, o, i;

    if (!linear_shape_ok(batches, in_features, out_features) || input == 0 || weight == 0 ||
        output == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (b = 0; b < batches; b++) {
        const float *x = input + b * in_features;
        for (o = 0; o < out_features; o++) {
            const float *w = weight + o * in_features;
            float acc = bias != 0 ? bias[o] : 0.0f;
            for (i = 0; i < in_features; i++) {
                acc += x[i] * w[i];
            }
            output[b * out_features + o] = acc;
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_linear_grad_input_f32(int32_t batches, int32_t in_features,
                                               int32_t out_features, const float *weight,
                                               const float *grad_output, float *grad_input,
                                               int32_t accumulate)
{
    int32_t b, o, i;

    if (!linear_shape_ok(batches, in_features, out_features) || weight == 0 ||
        grad_output == 0 || grad_input == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (b = 0; b < batches; b++) {
        float *gi = grad_input + b * in_features;
        const float *go = grad_output + b * out_features;
        if (accumulate == 0) {
            for (i = 0; i < in_features; i++) {
                gi[i] = 0.0f;
            }
        }
        for (o = 0; o < out_features; o++) {
            const float g = go[o];
            const float *w = weight + o * in_features;
            for (i = 0; i < in_features; i++) {
                gi[i] += g * w[i];
            }
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_linear_grad_weight_f32(int32_t batches, int32_t in_features,
                                                const float *input, int32_t out_features,
                                                const float *grad_output, float *grad_weight)
{
    int32_t b, o, i;

    if (!linear_shape_ok(batches, in_features, out_features) || input == 0 ||
        grad_output == 0 || grad_weight == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (o = 0; o < out_features; o++) {
        float *gw = grad_weight + o * in_features;
        for (i = 0; i < in_features; i++) {
            float acc = 0.0f;
            for (b = 0; b < batches; b++) {
                acc += grad_output[b * out_features + o] * input[b * in_features + i];
            }
            gw[i] += acc;
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_linear_grad_bias_f32(int32_t batches, int32_t out_features,
                                              const float *grad_output, float *grad_bias)
{
    int32_t b, o;

    if (!linear_shape_ok(batches, 1, out_features) || grad_output == 0 || grad_bias == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (o = 0; o < out_features; o++) {
        float acc = 0.0f;
        for (b = 0; b < batches; b++) {
            acc += grad_output[b * out_features + o];
        }
        grad_bias[o] += acc;
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_linear_grad_input_s8w_f32(int32_t batches, int32_t in_features,
                                                   int32_t out_features, const int8_t *weight,
                                                   const float *weight_scale,
                                                   const float *grad_output, float *grad_input,
                                                   int32_t accumulate)
{
    int32_t b, o, i;

    if (!linear_shape_ok(batches, in_features, out_features) || weight == 0 ||
        weight_scale == 0 || grad_output == 0 || grad_input == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (b = 0; b < batches; b++) {
        float *gi = grad_input + b * in_features;
        const float *go = grad_output + b * out_features;
        if (accumulate == 0) {
            for (i = 0; i < in_features; i++) {
                gi[i] = 0.0f;
            }
        }
        for (o = 0; o < out_features; o++) {
            const float g = go[o] * weight_scale[o];
            const int8_t *w = weight + o * in_features;
            for (i = 0; i < in_features; i++) {
                gi[i] += g * (float)w[i];
            }
        }
    }
    return MCUTL_F32_OK;
}
