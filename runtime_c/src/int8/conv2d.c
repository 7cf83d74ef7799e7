/*
 * mcutl int8 kernels: CONV_2D (standard and grouped), bit-exact with TFLite's
 * reference per-channel convolution.
 */
#include "mcutl/int8.h"

#include "args.h"
#include "dot.h"
#include "fixedpoint.h"
#include "window.h"

mcutl_status_t mcutl_conv2d_s8(const mcutl_conv_params_t *params,
                               const mcutl_dims_t *input_dims, const int8_t *input,
                               const mcutl_dims_t *filter_dims, const int8_t *filter,
                               const int32_t *bias,
                               const mcutl_dims_t *output_dims, int8_t *output)
{
    int32_t b, oy, ox, oc, ky, kx;
    int32_t in_h, in_w, in_c, k_h, k_w, cg_in, cg_out, out_h, out_w, out_c;
    int32_t in_zp, out_zp;

    if (!mcutl_conv_args_ok(params, input_dims, input, filter_dims, filter, output_dims, output)) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    in_h = input_dims->h;
    in_w = input_dims->w;
    in_c = input_dims->c;
    k_h = filter_dims->h;
    k_w = filter_dims->w;
    cg_in = filter_dims->c;
    out_h = output_dims->h;
    out_w = output_dims->w;
    out_c = output_dims->c;
    cg_out = out_c / params->groups;
    in_zp = params->input_zero_point;
    out_zp = params->output_zero_point;

    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *in_batch = input + (int32_t)b * in_h * in_w * in_c;
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t iy0 = oy * params->stride_h - params->pad_top;
            int32_t ky_first, ky_last;
            mcutl_window_taps(iy0, k_h, params->dilation_h, in_h, &ky_first, &ky_last);
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t ix0 = ox * params->stride_w - params->pad_left;
                int32_t kx_first, kx_last;
                mcutl_window_taps(ix0, k_w, params->dilation_w, in_w, &kx_first, &kx_last);
                for (oc = 0; oc < out_c; ++oc) {
                    const int32_t group = oc / cg_out;
                    const int8_t *f_oc = filter + oc * k_h * k_w * cg_in;
                    int32_t acc = 0;
                    int32_t v;
                    for (ky = ky_first; ky < ky_last; ++ky) {
                        const int32_t iy = iy0 + ky * params->dilation_h;
                        for (kx = kx_first; kx < kx_last; ++kx) {
                            const int32_t ix = ix0 + kx * params->dilation_w;
                            const int8_t *in_px = in_batch + (iy * in_w + ix) * in_c + group * cg_in;
                            const int8_t *f_px = f_oc + (ky * k_w + kx) * cg_in;
                            acc += mcutl_dot_s8(f_px, in_px, cg_in, in_zp);
                        }
                    }
                    if (bias != 0) {
                        acc += bias[oc];
                    }
                    v = mcutl_requantize(acc, params->output_multiplier[oc],
                                         params->output_shift[oc]) + out_zp;
                    *output++ = (int8_t)mcutl_clamp32(v, params->act_min, params->act_max);
                }
            }
        }
    }
    return MCUTL_KERNEL_OK;
}
