/*
 * Average pooling (kernel = stride, no padding), global average pooling and
 * nearest-neighbour upsampling by integer factors: forward and backward.
 * Semantics: mcutl/f32.h.
 */
#include <stdint.h>

#include "f32_internal.h"
#include "mcutl/f32.h"

mcutl_f32_status_t mcutl_avg_pool_f32(const mcutl_f32_dims_t *input_dims, const float *input,
                                      int32_t pool_h, int32_t pool_w, float *output)
{
    int32_t n, oy, ox, c, i, j;
    int32_t oh, ow, ch;
    float area;

    if (f32_dims_count(input_dims) < 0 || pool_h < 1 || pool_w < 1 ||
        input_dims->h < pool_h || input_dims->w < pool_w || input == 0 || output == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    oh = input_dims->h / pool_h;
    ow = input_dims->w / pool_w;
    ch = input_dims->c;
    area = (float)(pool_h * pool_w);
    for (n = 0; n < input_dims->n; n++) {
        for (oy = 0; oy < oh; oy++) {
            for (ox = 0; ox < ow; ox++) {
                float *out = output + ((n * oh + oy) * ow + ox) * ch;
                for (c = 0; c < ch; c++) {
                    float acc = 0.0f;
                    for (i = 0; i < pool_h; i++) {
                        const float *x = input + ((n * input_dims->h + oy * pool_h + i) *
                                                      input_dims->w + ox * pool_w) * ch + c;
                        for (j = 0; j < pool_w; j++) {
                            acc += x[j * ch];
                        }
                    }
                    out[c] = acc / area;
                }
            }
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_avg_pool_grad_input_f32(const mcutl_f32_dims_t *input_dims,
                                                 int32_t pool_h, int32_t pool_w,
                                                 const float *grad_output, float *grad_input,
                                                 int32_t accumulate)
{
    int32_t n, iy, ix, c;
    int32_t oh, ow, ch;
    float area;

    if (f32_dims_count(input_dims) < 0 || pool_h < 1 || pool_w < 1 ||
        input_dims->h < pool_h || input_dims->w < pool_w || grad_output == 0 ||
        grad_input == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    oh = input_dims->h / pool_h;
    ow = input_dims->w / pool_w;
    ch = input_dims->c;
    area = (float)(pool_h * pool_w);
    for (n = 0; n < input_dims->n; n++) {
        for (iy = 0; iy < input_dims->h; iy++) {
            for (ix = 0; ix < input_dims->w; ix++) {
                float *gi = grad_input + ((n * input_dims->h + iy) * input_dims->w + ix) * ch;
                const int32_t oy = iy / pool_h;
                const int32_t ox = ix / pool_w;
                const int inside = oy < oh && ox < ow;
                const float *go = inside ? grad_output + ((n * oh + oy) * ow + ox) * ch
                                         : grad_output;
                for (c = 0; c < ch; c++) {
                    const float g = inside ? go[c] / area : 0.0f;
                    if (accumulate == 0) {
                        gi[c] = g;
                    } else {
                        gi[c] += g;
                    }
                }
            }
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_global_avg_pool_f32(const mcutl_f32_dims_t *input_dims,
                                             const float *input, float *output)
{
    int32_t n, p, c;
    int32_t hw, ch;
    float area;

    if (f32_dims_count(input_dims) < 0 || input == 0 || output == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    hw = input_dims->h * input_dims->w;
    ch = input_dims->c;
    area = (float)hw;
    for (n = 0; n < input_dims->n; n++) {
        const float *x = input + n * hw * ch;
        for (c = 0; c < ch; c++) {
            float acc = 0.0f;
            for (p = 0; p < hw; p++) {
                acc += x[p * ch + c];
            }
            output[n * ch + c] = acc / area;
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_global_avg_pool_grad_input_f32(const mcutl_f32_dims_t *input_dims,
                                                        const float *grad_output,
                                                        float *grad_input, int32_t accumulate)
{
    int32_t n, p, c;
    int32_t hw, ch;
    float area;

    if (f32_dims_count(input_dims) < 0 || grad_output == 0 || grad_input == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    hw = input_dims->h * input_dims->w;
    ch = input_dims->c;
    area = (float)hw;
    for (n = 0; n < input_dims->n; n++) {
        const float *go = grad_output + n * ch;
        float *gi = grad_input + n * hw * ch;
        for (p = 0; p < hw; p++) {
            for (c = 0; c < ch; c++) {
                const float g = go[c] / area;
                if (accumulate == 0) {
                    gi[p * ch + c] = g;
                } else {
                    gi[p * ch + c] += g;
                }
            }
        }
    }
    return MCUTL_F32_OK;
}

/* 1 if the upsampled tensor [N, H * fh, W * fw, C] fits int32 */
static int upsample_ok(const mcutl_f32_dims_t *d, int32_t fh, int32_t fw)
{
    mcutl_f32_dims_t up;
    if (f32_dims_count(d) < 0 || fh < 1 || fw < 1) {
        return 0;
    }
    up = *d;
    up.h = f32_mul_count(d->h, fh);
    up.w = f32_mul_count(d->w, fw);
    return f32_dims_count(&up) >= 0;
}

mcutl_f32_status_t mcutl_upsample_nearest_f32(const mcutl_f32_dims_t *input_dims,
                                              const float *input, int32_t factor_h,
                                              int32_t factor_w, float *output)
{
    int32_t n, oy, ox, c;
    int32_t oh, ow, ch;

    if (!upsample_ok(input_dims, factor_h, factor_w) || input == 0 || output == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    oh = input_dims->h * factor_h;
    ow = input_dims->w * factor_w;
    ch = input_dims->c;
    for (n = 0; n < input_dims->n; n++) {
        for (oy = 0; oy < oh; oy++) {
            for (ox = 0; ox < ow; ox++) {
                const float *x = input + ((n * input_dims->h + oy / factor_h) * input_dims->w +
                                          ox / factor_w) * ch;
                float *out = output + ((n * oh + oy) * ow + ox) * ch;
                for (c = 0; c < ch; c++) {
                    out[c] = x[c];
                }
            }
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_upsample_nearest_grad_input_f32(const mcutl_f32_dims_t *input_dims,
                                                         int32_t factor_h, int32_t factor_w,
                                                         const float *grad_output,
                                                         float *grad_input,
                                                         int32_t accumulate)
{
    int32_t n, iy, ix, c, i, j;
    int32_t ow, ch;

    if (!upsample_ok(input_dims, factor_h, factor_w) || grad_output == 0 || grad_input == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    ow = input_dims->w * factor_w;
    ch = input_dims->c;
    for (n = 0; n < input_dims->n; n++) {
        for (iy = 0; iy < input_dims->h; iy++) {
            for (ix = 0; ix < input_dims->w; ix++) {
                float *gi = grad_input + ((n * input_dims->h + iy) * input_dims->w + ix) * ch;
                for (c = 0; c < ch; c++) {
                    float acc = 0.0f;
                    for (i = 0; i < factor_h; i++) {
                        const float *go = grad_output +
                                          ((n * input_dims->h * factor_h + iy * factor_h + i) *
                                               ow + ix * factor_w) * ch + c;
                        for (j = 0; j < factor_w; j++) {
                            acc += go[j * ch];
                        }
                    }
                    if (accumulate == 0) {
                        gi[c] = acc;
                    } else {
                        gi[c] += acc;
                    }
                }
            }
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_dequantize_avg_pool_s8_f32(const mcutl_f32_dims_t *input_dims,
                                                    const int8_t *input, int32_t pool_h,
                                                    int32_t pool_w, float scale,
                                                    int32_t zero_point, float *output)
{
    int32_t n, oy, ox, c, i, j;
    int32_t oh, ow, ch;
    float area;

    if (f32_dims_count(input_dims) < 0 || pool_h < 1 || pool_w < 1 ||
        input_dims->h < pool_h || input_dims->w < pool_w || input == 0 || output == 0 ||
        zero_point < -128 || zero_point > 127) {
        return MCUTL_F32_ARG_ERROR;
    }
    oh = input_dims->h / pool_h;
    ow = input_dims->w / pool_w;
    ch = input_dims->c;
    area = (float)(pool_h * pool_w);
    for (n = 0; n < input_dims->n; n++) {
        for (oy = 0; oy < oh; oy++) {
            for (ox = 0; ox < ow; ox++) {
                float *out = output + ((n * oh + oy) * ow + ox) * ch;
                for (c = 0; c < ch; c++) {
                    float acc = 0.0f;
                    for (i = 0; i < pool_h; i++) {
                        const int8_t *x = input + ((n * input_dims->h + oy * pool_h + i) *
                                                       input_dims->w + ox * pool_w) * ch + c;
                        for (j = 0; j < pool_w; j++) {
                            /* as mcutl_dequantize_s8_f32: one rounded product */
                            const float v = scale * (float)((int32_t)x[j * ch] - zero_point);
                            acc += v;
                        }
                    }
                    out[c] = acc / area;
                }
            }
        }
    }
    return MCUTL_F32_OK;
}
