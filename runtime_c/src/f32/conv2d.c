/*
 * float32 2-D convolution (standard, grouped, depthwise): forward and the three
 * gradients. Layouts and semantics: mcutl/f32.h.
 */
#include <stdint.h>

#include "f32_internal.h"
#include "mcutl/f32.h"

mcutl_f32_status_t mcutl_conv2d_f32(const mcutl_f32_conv_params_t *params,
                                    const mcutl_f32_dims_t *input_dims, const float *input,
                                    const mcutl_f32_dims_t *weight_dims, const float *weight,
                                    const float *bias, const mcutl_f32_dims_t *output_dims,
                                    float *output)
{
    int32_t n, oy, ox, oc, ky, kx, ci;
    int32_t c_in, c_out, cg, oc_per_g, kh, kw;

    if (!f32_conv_geometry_ok(params, input_dims, weight_dims, output_dims) || input == 0 ||
        weight == 0 || output == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    c_in = input_dims->c;
    c_out = output_dims->c;
    cg = weight_dims->c;
    oc_per_g = c_out / params->groups;
    kh = weight_dims->h;
    kw = weight_dims->w;
    for (n = 0; n < output_dims->n; n++) {
        for (oy = 0; oy < output_dims->h; oy++) {
            for (ox = 0; ox < output_dims->w; ox++) {
                float *out = output + ((n * output_dims->h + oy) * output_dims->w +
                                       ox) * c_out;
                for (oc = 0; oc < c_out; oc++) {
                    const int32_t g = oc / oc_per_g;
                    float acc = bias != 0 ? bias[oc] : 0.0f;
                    for (ky = 0; ky < kh; ky++) {
                        const int32_t iy = oy * params->stride_h - params->pad_top +
                                           ky * params->dilation_h;
                        if (iy < 0 || iy >= input_dims->h) {
                            continue;
                        }
                        for (kx = 0; kx < kw; kx++) {
                            const int32_t ix = ox * params->stride_w - params->pad_left +
                                               kx * params->dilation_w;
                            const float *x;
                            const float *w;
                            if (ix < 0 || ix >= input_dims->w) {
                                continue;
                            }
                            x = input + ((n * input_dims->h + iy) * input_dims->w + ix) * c_in +
                                g * cg;
                            w = weight + ((oc * kh + ky) * kw + kx) * cg;
                            for (ci = 0; ci < cg; ci++) {
                                acc += x[ci] * w[ci];
                            }
                        }
                    }
                    out[oc] = acc;
                }
            }
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_conv2d_grad_input_f32(const mcutl_f32_conv_params_t *params,
                                               const mcutl_f32_dims_t *output_dims,
                                               const float *grad_output,
                                               const mcutl_f32_dims_t *weight_dims,
                                               const float *weight,
                                               const mcutl_f32_dims_t *input_dims,
                                               float *grad_input, int32_t accumulate)
{
    int32_t n, iy, ix, ky, kx, oc, ci;
    int32_t c_in, c_out, cg, oc_per_g, kh, kw;

    if (!f32_conv_geometry_ok(params, input_dims, weight_dims, output_dims) ||
        grad_output == 0 || weight == 0 || grad_input == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    c_in = input_dims->c;
    c_out = output_dims->c;
    cg = weight_dims->c;
    oc_per_g = c_out / params->groups;
    kh = weight_dims->h;
    kw = weight_dims->w;
    /* gather: each input pixel collects the taps that read it, so every element
     * of grad_input is written by one pass (no scratch, no zeroing pass) */
    for (n = 0; n < input_dims->n; n++) {
        for (iy = 0; iy < input_dims->h; iy++) {
            for (ix = 0; ix < input_dims->w; ix++) {
                float *gi = grad_input + ((n * input_dims->h + iy) * input_dims->w + ix) * c_in;
                if (accumulate == 0) {
                    for (ci = 0; ci < c_in; ci++) {
                        gi[ci] = 0.0f;
                    }
                }
                for (ky = 0; ky < kh; ky++) {
                    const int32_t ty = iy + params->pad_top - ky * params->dilation_h;
                    int32_t oy;
                    if (ty < 0 || ty % params->stride_h != 0) {
                        continue;
                    }
                    oy = ty / params->stride_h;
                    if (oy >= output_dims->h) {
                        continue;
                    }
                    for (kx = 0; kx < kw; kx++) {
                        const int32_t tx = ix + params->pad_left - kx * params->dilation_w;
                        int32_t ox;
                        const float *go;
                        if (tx < 0 || tx % params->stride_w != 0) {
                            continue;
                        }
                        ox = tx / params->stride_w;
                        if (ox >= output_dims->w) {
                            continue;
                        }
                        go = grad_output + ((n * output_dims->h + oy) * output_dims->w + ox) *
                                               c_out;
                        for (oc = 0; oc < c_out; oc++) {
                            const float g = go[oc];
                            const float *w = weight + ((oc * kh + ky) * kw + kx) * cg;
                            float *d = gi + (oc / oc_per_g) * cg;
                            for (ci = 0; ci < cg; ci++) {
                                d[ci] += g * w[ci];
                            }
                        }
                    }
                }
            }
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_conv2d_grad_weight_f32(const mcutl_f32_conv_params_t *params,
                                                const mcutl_f32_dims_t *input_dims,
                                                const float *input,
                                                const mcutl_f32_dims_t *output_dims,
                                                const float *grad_output,
                                                const mcutl_f32_dims_t *weight_dims,
                                                float *grad_weight)
{
    int32_t n, oy, ox, oc, ky, kx, ci;
    int32_t c_in, c_out, cg, oc_per_g, kh, kw;

    if (!f32_conv_geometry_ok(params, input_dims, weight_dims, output_dims) || input == 0 ||
        grad_output == 0 || grad_weight == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    c_in = input_dims->c;
    c_out = output_dims->c;
    cg = weight_dims->c;
    oc_per_g = c_out / params->groups;
    kh = weight_dims->h;
    kw = weight_dims->w;
    for (oc = 0; oc < c_out; oc++) {
        const int32_t g = oc / oc_per_g;
        for (ky = 0; ky < kh; ky++) {
            int32_t oy_lo, oy_hi;
            f32_tap_range(ky * params->dilation_h, params->pad_top, params->stride_h,
                          input_dims->h, output_dims->h, &oy_lo, &oy_hi);
            for (kx = 0; kx < kw; kx++) {
                int32_t ox_lo, ox_hi;
                float *gw = grad_weight + ((oc * kh + ky) * kw + kx) * cg;
                f32_tap_range(kx * params->dilation_w, params->pad_left, params->stride_w,
                              input_dims->w, output_dims->w, &ox_lo, &ox_hi);
                for (ci = 0; ci < cg; ci++) {
                    float acc = 0.0f;
                    for (n = 0; n < input_dims->n; n++) {
                        for (oy = oy_lo; oy < oy_hi; oy++) {
                            const int32_t iy = oy * params->stride_h - params->pad_top +
                                               ky * params->dilation_h;
                            const float *go = grad_output +
                                              (n * output_dims->h + oy) * output_dims->w * c_out +
                                              oc;
                            const float *x = input +
                                             (n * input_dims->h + iy) * input_dims->w * c_in +
                                             g * cg + ci;
                            for (ox = ox_lo; ox < ox_hi; ox++) {
                                const int32_t ix = ox * params->stride_w - params->pad_left +
                                                   kx * params->dilation_w;
                                acc += go[ox * c_out] * x[ix * c_in];
                            }
                        }
                    }
                    gw[ci] += acc;
                }
            }
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_conv2d_grad_bias_f32(const mcutl_f32_dims_t *output_dims,
                                              const float *grad_output, float *grad_bias)
{
    int32_t count = f32_dims_count(output_dims);
    int32_t pixels;
    int32_t c;
    int32_t i;

    if (count < 0 || grad_output == 0 || grad_bias == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    pixels = count / output_dims->c;
    for (c = 0; c < output_dims->c; c++) {
        float acc = 0.0f;
        for (i = 0; i < pixels; i++) {
            acc += grad_output[i * output_dims->c + c];
        }
        grad_bias[c] += acc;
    }
    return MCUTL_F32_OK;
}
