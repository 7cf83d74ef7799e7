/*
 * In-place optimizer updates with PyTorch's conventions (SGD with momentum,
 * Adam). Semantics: mcutl/f32.h.
 */
#include <stdint.h>

#include "f32_internal.h"
#include "mcutl/f32.h"

static int sgd_params_ok(const mcutl_f32_sgd_params_t *p)
{
    return p != 0 && p->lr >= 0.0f && p->momentum >= 0.0f && p->momentum < 1.0f &&
           p->weight_decay >= 0.0f;
}

mcutl_f32_status_t mcutl_sgd_step_f32(const mcutl_f32_sgd_params_t *params, int32_t size,
                                      float *weight, float *grad, float *momentum_buf,
                                      int32_t zero_grad)
{
    int32_t i;

    if (!sgd_params_ok(params) || size < 0 ||
        (size > 0 && (weight == 0 || grad == 0 ||
                      (params->momentum != 0.0f && momentum_buf == 0)))) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (i = 0; i < size; i++) {
        float g = grad[i];
        if (params->weight_decay != 0.0f) {
            g += params->weight_decay * weight[i];
        }
        if (params->momentum != 0.0f) {
            g = params->momentum * momentum_buf[i] + g;
            momentum_buf[i] = g;
        }
        weight[i] -= params->lr * g;
        if (zero_grad != 0) {
            grad[i] = 0.0f;
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_sgd_accum_begin_f32(const mcutl_f32_sgd_params_t *params,
                                             int32_t size, float *momentum_buf)
{
    int32_t i;

    if (!sgd_params_ok(params) || size < 0 || (size > 0 && momentum_buf == 0)) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (i = 0; i < size; i++) {
        momentum_buf[i] *= params->momentum;
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_sgd_accum_step_f32(const mcutl_f32_sgd_params_t *params,
                                            int32_t size, float *weight, float *momentum_buf)
{
    int32_t i;

    if (!sgd_params_ok(params) || size < 0 ||
        (size > 0 && (weight == 0 || momentum_buf == 0))) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (i = 0; i < size; i++) {
        float v = momentum_buf[i];
        if (params->weight_decay != 0.0f) {
            v += params->weight_decay * weight[i];
            momentum_buf[i] = v;
        }
        weight[i] -= params->lr * v;
    }
    return MCUTL_F32_OK;
}

/*
 * 1 - beta^t for beta in [0, 1), t >= 1, without the cancellation of 1 - pow():
 * binary powering on the complements q = 1 - beta^k, using
 * 1 - beta^(j+k) = q_j + q_k - q_j q_k (every step adds non-negative terms to a
 * value >= the subtracted product), so the relative error grows like log2(t) ulp.
 */
static float one_minus_pow(float beta, int32_t t)
{
    float q_base = 1.0f - beta; /* 1 - beta^(2^i) */
    float q = 0.0f;             /* 1 - beta^(bits of t consumed so far) */
    while (t > 0) {
        if ((t & 1) != 0) {
            q = (q + q_base) - q * q_base;
        }
        t >>= 1;
        if (t > 0) {
            q_base = (q_base + q_base) - q_base * q_base;
        }
    }
    return q;
}

mcutl_f32_status_t mcutl_adam_step_f32(const mcutl_f32_adam_params_t *params, int32_t step,
                                       int32_t size, float *weight, float *grad,
                                       float *exp_avg, float *exp_avg_sq, int32_t zero_grad)
{
    int32_t i;
    float step_size;
    float bc2_sqrt;
    float b1c;
    float b2c;

    if (params == 0 || step < 1 || size < 0 || !(params->lr >= 0.0f) ||
        !(params->beta1 >= 0.0f && params->beta1 < 1.0f) ||
        !(params->beta2 >= 0.0f && params->beta2 < 1.0f) || !(params->eps > 0.0f) ||
        !(params->weight_decay >= 0.0f) ||
        (size > 0 && (weight == 0 || grad == 0 || exp_avg == 0 || exp_avg_sq == 0))) {
        return MCUTL_F32_ARG_ERROR;
    }
    step_size = params->lr / one_minus_pow(params->beta1, step);
    bc2_sqrt = mcutl_sqrtf(one_minus_pow(params->beta2, step));
    b1c = 1.0f - params->beta1;
    b2c = 1.0f - params->beta2;
    for (i = 0; i < size; i++) {
        float g = grad[i];
        float m;
        float v;
        if (params->weight_decay != 0.0f) {
            g += params->weight_decay * weight[i];
        }
        m = params->beta1 * exp_avg[i] + b1c * g;
        v = params->beta2 * exp_avg_sq[i] + b2c * (g * g);
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        weight[i] -= step_size * (m / (mcutl_sqrtf(v) / bc2_sqrt + params->eps));
        if (zero_grad != 0) {
            grad[i] = 0.0f;
        }
    }
    return MCUTL_F32_OK;
}
