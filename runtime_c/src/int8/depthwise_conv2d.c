/*
 * mcutl int8 kernels: DEPTHWISE_CONV_2D with depth multiplier, bit-exact with
 * TFLite's reference per-channel depthwise convolution.
 */
#include "mcutl/int8.h"

#include "args.h"
#include "fixedpoint.h"
#include "window.h"

mcutl_status_t mcutl_depthwise_conv2d_s8(const mcutl_dw_conv_params_t *params,
                                         const mcutl_dims_t *input_dims, const int8_t *input,
                                         const mcutl_dims_t *filter_dims, const int8_t *filter,
                                         const int32_t *bias,
                                         const mcutl_dims_t *output_dims, int8_t *output)
{
    int32_t b, oy, ox, ic, m, ky, kx;
    int32_t in_h, in_w, in_c, k_h, k_w, out_h, out_w, out_c, dm;
    int32_t in_zp, out_zp;

    if (!mcutl_dw_args_ok(params, input_dims, input, filter_dims, filter, output_dims, output)) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    in_h = input_dims->h;
    in_w = input_dims->w;
    in_c = input_dims->c;
    k_h = filter_dims->h;
    k_w = filter_dims->w;
    out_h = output_dims->h;
    out_w = output_dims->w;
    out_c = output_dims->c;
    dm = params->depth_multiplier;
    in_zp = params->input_zero_point;
    out_zp = params->output_zero_point;

    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *in_batch = input + b * in_h * in_w * in_c;
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t iy0 = oy * params->stride_h - params->pad_top;
            int32_t ky_first, ky_last;
            mcutl_window_taps(iy0, k_h, params->dilation_h, in_h, &ky_first, &ky_last);
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t ix0 = ox * params->stride_w - params->pad_left;
                int32_t kx_first, kx_last;
                mcutl_window_taps(ix0, k_w, params->dilation_w, in_w, &kx_first, &kx_last);
                for (ic = 0; ic < in_c; ++ic) {
                    for (m = 0; m < dm; ++m) {
                        const int32_t oc = ic * dm + m;
                        int32_t acc = 0;
                        int32_t v;
                        for (ky = ky_first; ky < ky_last; ++ky) {
                            const int32_t iy = iy0 + ky * params->dilation_h;
                            const int8_t *in_row = in_batch + iy * in_w * in_c + ic;
                            const int8_t *f_row = filter + ky * k_w * out_c + oc;
                            for (kx = kx_first; kx < kx_last; ++kx) {
                                const int32_t ix = ix0 + kx * params->dilation_w;
                                acc += (int32_t)f_row[kx * out_c] *
                                       ((int32_t)in_row[ix * in_c] - in_zp);
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
    }
    return MCUTL_KERNEL_OK;
}
