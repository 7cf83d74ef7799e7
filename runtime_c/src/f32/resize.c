/*
 * resize.c - nearest-neighbour resize to any size (forward, backward) and a copy.
 */
#include "mcutl/f32_resize.h"

#include <string.h>

static int dims_ok(const mcutl_f32_dims_t *d)
{
    return d != 0 && d->n >= 1 && d->h >= 1 && d->w >= 1 && d->c >= 1;
}

mcutl_f32_status_t mcutl_resize_nearest_f32(const mcutl_f32_dims_t *input_dims,
                                            const float *input, int32_t out_h, int32_t out_w,
                                            float *output)
{
    int32_t n, y, x;
    if (!dims_ok(input_dims) || input == 0 || output == 0 || out_h < 1 || out_w < 1) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (n = 0; n < input_dims->n; n++) {
        for (y = 0; y < out_h; y++) {
            const int32_t sy = (y * input_dims->h) / out_h;
            for (x = 0; x < out_w; x++) {
                const int32_t sx = (x * input_dims->w) / out_w;
                const float *src =
                    input + ((n * input_dims->h + sy) * input_dims->w + sx) * input_dims->c;
                float *dst = output + ((n * out_h + y) * out_w + x) * input_dims->c;
                memcpy(dst, src, (size_t)input_dims->c * sizeof(float));
            }
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_resize_nearest_grad_input_f32(const mcutl_f32_dims_t *input_dims,
                                                       int32_t out_h, int32_t out_w,
                                                       const float *grad_output,
                                                       float *grad_input, int32_t accumulate)
{
    int32_t n, y, x, c, size;
    if (!dims_ok(input_dims) || grad_output == 0 || grad_input == 0 || out_h < 1 ||
        out_w < 1) {
        return MCUTL_F32_ARG_ERROR;
    }
    size = input_dims->n * input_dims->h * input_dims->w * input_dims->c;
    if (!accumulate) {
        for (c = 0; c < size; c++) {
            grad_input[c] = 0.0f;
        }
    }
    for (n = 0; n < input_dims->n; n++) {
        for (y = 0; y < out_h; y++) {
            const int32_t sy = (y * input_dims->h) / out_h;
            for (x = 0; x < out_w; x++) {
                const int32_t sx = (x * input_dims->w) / out_w;
                float *dst =
                    grad_input + ((n * input_dims->h + sy) * input_dims->w + sx) * input_dims->c;
                const float *src = grad_output + ((n * out_h + y) * out_w + x) * input_dims->c;
                for (c = 0; c < input_dims->c; c++) {
                    dst[c] += src[c];
                }
            }
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_copy_f32(const float *src, int32_t size, float *dst)
{
    if (src == 0 || dst == 0 || size < 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    memcpy(dst, src, (size_t)size * sizeof(float));
    return MCUTL_F32_OK;
}
