/*
 * Group normalisation (per sample) and per-channel scale + shift: forward and
 * backward. Semantics and what is saved for backward: mcutl/f32.h.
 */
#include <stdint.h>

#include "f32_internal.h"
#include "mcutl/f32.h"

mcutl_f32_status_t mcutl_group_norm_f32(const mcutl_f32_dims_t *dims, const float *input,
                                        int32_t groups, float eps, const float *gamma,
                                        const float *beta, float *output, float *xhat,
                                        float *mean, float *rstd)
{
    const int32_t count = f32_dims_count(dims);
    int32_t n, g, p, c;
    int32_t hw, cg, c_all;
    float cnt;

    if (count < 0 || groups < 1 || dims->c % groups != 0 || !(eps > 0.0f) || input == 0 ||
        output == 0 || (xhat != 0 && xhat == output)) {
        return MCUTL_F32_ARG_ERROR;
    }
    hw = dims->h * dims->w;
    c_all = dims->c;
    cg = c_all / groups;
    cnt = (float)(hw * cg);
    for (n = 0; n < dims->n; n++) {
        for (g = 0; g < groups; g++) {
            const int32_t base = n * hw * c_all + g * cg;
            float sum = 0.0f;
            float sq = 0.0f;
            float mu;
            float rs;
            for (p = 0; p < hw; p++) {
                const float *x = input + base + p * c_all;
                for (c = 0; c < cg; c++) {
                    sum += x[c];
                }
            }
            mu = sum / cnt;
            for (p = 0; p < hw; p++) {
                const float *x = input + base + p * c_all;
                for (c = 0; c < cg; c++) {
                    const float d = x[c] - mu;
                    sq += d * d;
                }
            }
            rs = 1.0f / mcutl_sqrtf(sq / cnt + eps);
            if (mean != 0) {
                mean[n * groups + g] = mu;
            }
            if (rstd != 0) {
                rstd[n * groups + g] = rs;
            }
            /* element-wise: reads x[i] before writing xhat[i] / out[i] (in place ok) */
            for (p = 0; p < hw; p++) {
                const int32_t off = base + p * c_all;
                for (c = 0; c < cg; c++) {
                    const int32_t ch = g * cg + c;
                    const float xh = (input[off + c] - mu) * rs;
                    if (xhat != 0) {
                        xhat[off + c] = xh;
                    }
                    output[off + c] = (gamma != 0 ? xh * gamma[ch] : xh) +
                                      (beta != 0 ? beta[ch] : 0.0f);
                }
            }
        }
    }
    return MCUTL_F32_OK;
}

/* grad_gamma[c] += sum grad_out * xhat, grad_beta[c] += sum grad_out (both optional) */
static void per_channel_sums(int32_t pixels, int32_t channels, const float *xhat,
                             const float *grad_output, float *grad_gamma, float *grad_beta)
{
    int32_t c, p;

    for (c = 0; c < channels; c++) {
        float sg = 0.0f;
        float sb = 0.0f;
        for (p = 0; p < pixels; p++) {
            const float dy = grad_output[p * channels + c];
            if (grad_gamma != 0) {
                sg += dy * xhat[p * channels + c];
            }
            sb += dy;
        }
        if (grad_gamma != 0) {
            grad_gamma[c] += sg;
        }
        if (grad_beta != 0) {
            grad_beta[c] += sb;
        }
    }
}

mcutl_f32_status_t mcutl_group_norm_grad_f32(const mcutl_f32_dims_t *dims, int32_t groups,
                                             const float *xhat, const float *rstd,
                                             const float *gamma, const float *grad_output,
                                             float *grad_input, int32_t accumulate,
                                             float *grad_gamma, float *grad_beta)
{
    const int32_t count = f32_dims_count(dims);
    int32_t n, g, p, c;
    int32_t hw, cg, c_all;
    float cnt;

    if (count < 0 || groups < 1 || dims->c % groups != 0 || xhat == 0 || grad_output == 0 ||
        (grad_input != 0 && rstd == 0)) {
        return MCUTL_F32_ARG_ERROR;
    }
    hw = dims->h * dims->w;
    c_all = dims->c;
    cg = c_all / groups;
    cnt = (float)(hw * cg);
    /* parameter gradients first: grad_input may overwrite grad_output or xhat */
    if (grad_gamma != 0 || grad_beta != 0) {
        per_channel_sums(count / c_all, c_all, xhat, grad_output, grad_gamma, grad_beta);
    }
    if (grad_input == 0) {
        return MCUTL_F32_OK;
    }
    for (n = 0; n < dims->n; n++) {
        for (g = 0; g < groups; g++) {
            const int32_t base = n * hw * c_all + g * cg;
            const float rs = rstd[n * groups + g];
            float s1 = 0.0f; /* sum dxh */
            float s2 = 0.0f; /* sum dxh * xhat */
            float m1;
            float m2;
            for (p = 0; p < hw; p++) {
                const int32_t off = base + p * c_all;
                for (c = 0; c < cg; c++) {
                    const float dxh = gamma != 0 ? grad_output[off + c] * gamma[g * cg + c]
                                                 : grad_output[off + c];
                    s1 += dxh;
                    s2 += dxh * xhat[off + c];
                }
            }
            m1 = s1 / cnt;
            m2 = s2 / cnt;
            for (p = 0; p < hw; p++) {
                const int32_t off = base + p * c_all;
                for (c = 0; c < cg; c++) {
                    const float dxh = gamma != 0 ? grad_output[off + c] * gamma[g * cg + c]
                                                 : grad_output[off + c];
                    const float gi = rs * ((dxh - m1) - xhat[off + c] * m2);
                    if (accumulate == 0) {
                        grad_input[off + c] = gi;
                    } else {
                        grad_input[off + c] += gi;
                    }
                }
            }
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_scale_shift_f32(const mcutl_f32_dims_t *dims, const float *input,
                                         const float *scale, const float *shift,
                                         float *output)
{
    const int32_t count = f32_dims_count(dims);
    int32_t i, c;

    if (count < 0 || input == 0 || scale == 0 || output == 0) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (i = 0; i < count; i += dims->c) {
        for (c = 0; c < dims->c; c++) {
            const float y = input[i + c] * scale[c];
            output[i + c] = shift != 0 ? y + shift[c] : y;
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_scale_shift_grad_f32(const mcutl_f32_dims_t *dims, const float *input,
                                              const float *scale, const float *grad_output,
                                              float *grad_input, int32_t accumulate,
                                              float *grad_scale, float *grad_shift)
{
    const int32_t count = f32_dims_count(dims);
    int32_t i, c;

    if (count < 0 || grad_output == 0 || (grad_scale != 0 && input == 0) ||
        (grad_input != 0 && scale == 0)) {
        return MCUTL_F32_ARG_ERROR;
    }
    /* parameter gradients first: grad_input may overwrite grad_output */
    if (grad_scale != 0 || grad_shift != 0) {
        per_channel_sums(count / dims->c, dims->c, input, grad_output, grad_scale, grad_shift);
    }
    if (grad_input != 0) {
        for (i = 0; i < count; i += dims->c) {
            for (c = 0; c < dims->c; c++) {
                const float gi = grad_output[i + c] * scale[c];
                if (accumulate == 0) {
                    grad_input[i + c] = gi;
                } else {
                    grad_input[i + c] += gi;
                }
            }
        }
    }
    return MCUTL_F32_OK;
}
