/*
 * Input gradients of frozen int8 convolutions (weights stay int8 in flash; the
 * real weight is weight_scale[co] * w_q). Layouts and semantics: mcutl/f32.h.
 */
#include <stdint.h>

#include "f32_internal.h"
#include "mcutl/f32.h"

/*
 * Shared gather loop. The weight of (co, ky, kx, ci_local) is at
 * weight[co * co_stride + (ky * kw + kx) * tap_stride + ci_local]; the output
 * channels of group g are [g * oc_per_g, (g + 1) * oc_per_g) and read input
 * channels [g * cg, (g + 1) * cg).
 * OHWI:  co_stride = KH*KW*cg, tap_stride = cg.
 * 1HWC:  co_stride = 1, tap_stride = C_out, cg = 1.
 */
static void grad_input_s8w(const mcutl_f32_conv_params_t *params,
                           const mcutl_f32_dims_t *output_dims, const float *grad_output,
                           int32_t kh, int32_t kw, int32_t cg, int32_t co_stride,
                           int32_t tap_stride, const int8_t *weight, const float *weight_scale,
                           const mcutl_f32_dims_t *input_dims, float *grad_input,
                           int32_t accumulate)
{
    const int32_t c_in = input_dims->c;
    const int32_t c_out = output_dims->c;
    const int32_t oc_per_g = c_out / params->groups;
    int32_t n, iy, ix, ky, kx, oc, ci;

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
                        const int8_t *wt = weight + (ky * kw + kx) * tap_stride;
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
                            const float g = go[oc] * weight_scale[oc];
                            const int8_t *w = wt + oc * co_stride;
                            float *d = gi + (oc / oc_per_g) * cg;
                            for (ci = 0; ci < cg; ci++) {
                                d[ci] += g * (float)w[ci];
                            }
                        }
                    }
                }
            }
        }
    }
}

mcutl_f32_status_t mcutl_conv2d_grad_input_s8w_f32(const mcutl_f32_conv_params_t *params,
                                                   const mcutl_f32_dims_t *output_dims,
                                                   const float *grad_output,
                                                   const mcutl_f32_dims_t *weight_dims,
                                                   const int8_t *weight,
                                                   const float *weight_scale,
                                                   const mcutl_f32_dims_t *input_dims,
                                                   float *grad_input, int32_t accumulate)
{
    if (!f32_conv_geometry_ok(params, input_dims, weight_dims, output_dims) ||
        grad_output == 0 || weight == 0 || weight_scale == 0 || grad_input == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    grad_input_s8w(params, output_dims, grad_output, weight_dims->h, weight_dims->w,
                   weight_dims->c, weight_dims->h * weight_dims->w * weight_dims->c,
                   weight_dims->c, weight, weight_scale, input_dims, grad_input, accumulate);
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_depthwise_conv2d_grad_input_s8w_f32(
    const mcutl_f32_conv_params_t *params, const mcutl_f32_dims_t *output_dims,
    const float *grad_output, const mcutl_f32_dims_t *weight_dims, const int8_t *weight,
    const float *weight_scale, const mcutl_f32_dims_t *input_dims, float *grad_input,
    int32_t accumulate)
{
    /* a 1HWC weight [1, KH, KW, C_out] is the OHWI weight [C_out, KH, KW, 1] of a
     * conv with groups = C_in, stored with the channel innermost */
    mcutl_f32_dims_t ohwi;

    if (weight_dims == 0 || input_dims == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    ohwi.n = weight_dims->c;
    ohwi.h = weight_dims->h;
    ohwi.w = weight_dims->w;
    ohwi.c = 1;
    if (weight_dims->n != 1 || params == 0 || params->groups != input_dims->c ||
        !f32_conv_geometry_ok(params, input_dims, &ohwi, output_dims) || grad_output == 0 ||
        weight == 0 || weight_scale == 0 || grad_input == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    grad_input_s8w(params, output_dims, grad_output, ohwi.h, ohwi.w, 1, 1, weight_dims->c,
                   weight, weight_scale, input_dims, grad_input, accumulate);
    return MCUTL_F32_OK;
}
