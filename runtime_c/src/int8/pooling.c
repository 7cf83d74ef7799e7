/*
 * mcutl int8 kernels: AVERAGE_POOL_2D (incl. global average pooling) and
 * MAX_POOL_2D, bit-exact with TFLite's reference int8 pooling kernels.
 */
#include "mcutl/int8.h"

#include "fixedpoint.h"
#include "window.h"

/* Every window must overlap the input in at least one row and one column. */
static int pool_args_ok(const mcutl_pool_params_t *p, const mcutl_dims_t *in_d,
                        const int8_t *in, const mcutl_dims_t *out_d, const int8_t *out)
{
    if (p == 0 || in == 0 || out == 0 || !mcutl_dims_ok(in_d) || !mcutl_dims_ok(out_d)) {
        return 0;
    }
    if (p->filter_h < 1 || p->filter_w < 1 || p->stride_h < 1 || p->stride_w < 1) {
        return 0;
    }
    if (p->pad_top < 0 || p->pad_left < 0 || p->pad_top >= p->filter_h ||
        p->pad_left >= p->filter_w) {
        return 0;
    }
    if ((out_d->h - 1) * p->stride_h - p->pad_top >= in_d->h ||
        (out_d->w - 1) * p->stride_w - p->pad_left >= in_d->w) {
        return 0;
    }
    if (out_d->n != in_d->n || out_d->c != in_d->c) {
        return 0;
    }
    return mcutl_act_range_ok(p->act_min, p->act_max);
}

mcutl_status_t mcutl_avg_pool_s8(const mcutl_pool_params_t *params,
                                 const mcutl_dims_t *input_dims, const int8_t *input,
                                 const mcutl_dims_t *output_dims, int8_t *output)
{
    int32_t b, oy, ox, c, ky, kx;
    int32_t in_h, in_w, ch;

    if (!pool_args_ok(params, input_dims, input, output_dims, output)) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    in_h = input_dims->h;
    in_w = input_dims->w;
    ch = input_dims->c;
    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *in_batch = input + b * in_h * in_w * ch;
        for (oy = 0; oy < output_dims->h; ++oy) {
            const int32_t iy0 = oy * params->stride_h - params->pad_top;
            int32_t ky_first, ky_last;
            mcutl_window_taps(iy0, params->filter_h, 1, in_h, &ky_first, &ky_last);
            for (ox = 0; ox < output_dims->w; ++ox) {
                const int32_t ix0 = ox * params->stride_w - params->pad_left;
                int32_t kx_first, kx_last, count;
                mcutl_window_taps(ix0, params->filter_w, 1, in_w, &kx_first, &kx_last);
                count = (ky_last - ky_first) * (kx_last - kx_first);
                for (c = 0; c < ch; ++c) {
                    int32_t acc = 0;
                    for (ky = ky_first; ky < ky_last; ++ky) {
                        const int32_t row = (iy0 + ky) * in_w + ix0;
                        for (kx = kx_first; kx < kx_last; ++kx) {
                            acc += in_batch[(row + kx) * ch + c];
                        }
                    }
                    /* Round to nearest, ties away from zero (C division truncates). */
                    acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    *output++ = (int8_t)mcutl_clamp32(acc, params->act_min, params->act_max);
                }
            }
        }
    }
    return MCUTL_KERNEL_OK;
}

mcutl_status_t mcutl_global_avg_pool_s8(const mcutl_dims_t *input_dims, const int8_t *input,
                                        int32_t act_min, int32_t act_max, int8_t *output)
{
    mcutl_pool_params_t p;
    mcutl_dims_t out_d;

    if (!mcutl_dims_ok(input_dims)) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    p.filter_h = input_dims->h;
    p.filter_w = input_dims->w;
    p.stride_h = 1;
    p.stride_w = 1;
    p.pad_top = 0;
    p.pad_left = 0;
    p.act_min = act_min;
    p.act_max = act_max;
    out_d.n = input_dims->n;
    out_d.h = 1;
    out_d.w = 1;
    out_d.c = input_dims->c;
    return mcutl_avg_pool_s8(&p, input_dims, input, &out_d, output);
}

mcutl_status_t mcutl_max_pool_s8(const mcutl_pool_params_t *params,
                                 const mcutl_dims_t *input_dims, const int8_t *input,
                                 const mcutl_dims_t *output_dims, int8_t *output)
{
    int32_t b, oy, ox, c, ky, kx;
    int32_t in_h, in_w, ch;

    if (!pool_args_ok(params, input_dims, input, output_dims, output)) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    in_h = input_dims->h;
    in_w = input_dims->w;
    ch = input_dims->c;
    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *in_batch = input + b * in_h * in_w * ch;
        for (oy = 0; oy < output_dims->h; ++oy) {
            const int32_t iy0 = oy * params->stride_h - params->pad_top;
            int32_t ky_first, ky_last;
            mcutl_window_taps(iy0, params->filter_h, 1, in_h, &ky_first, &ky_last);
            for (ox = 0; ox < output_dims->w; ++ox) {
                const int32_t ix0 = ox * params->stride_w - params->pad_left;
                int32_t kx_first, kx_last;
                mcutl_window_taps(ix0, params->filter_w, 1, in_w, &kx_first, &kx_last);
                for (c = 0; c < ch; ++c) {
                    int32_t mx = MCUTL_INT8_MIN;
                    for (ky = ky_first; ky < ky_last; ++ky) {
                        const int32_t row = (iy0 + ky) * in_w + ix0;
                        for (kx = kx_first; kx < kx_last; ++kx) {
                            const int32_t v = in_batch[(row + kx) * ch + c];
                            if (v > mx) {
                                mx = v;
                            }
                        }
                    }
                    *output++ = (int8_t)mcutl_clamp32(mx, params->act_min, params->act_max);
                }
            }
        }
    }
    return MCUTL_KERNEL_OK;
}
