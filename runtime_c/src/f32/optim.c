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

/* One element of an SGD step: the new momentum *v and the new weight (the arithmetic
 * the step and its finiteness check share). */
static inline float sgd_element(const mcutl_f32_sgd_params_t *p, float w, float g, float *v)
{
    if (p->weight_decay != 0.0f) {
        g += p->weight_decay * w;
    }
    if (p->momentum != 0.0f) {
        g = p->momentum * *v + g;
        *v = g;
    }
    return w - p->lr * g;
}

static int sgd_args_ok(const mcutl_f32_sgd_params_t *params, int32_t size, const float *weight,
                       const float *grad, const float *momentum_buf)
{
    return sgd_params_ok(params) && size >= 0 &&
           (size == 0 || (weight != 0 && grad != 0 &&
                          (params->momentum == 0.0f || momentum_buf != 0)));
}

mcutl_f32_status_t mcutl_sgd_step_f32(const mcutl_f32_sgd_params_t *params, int32_t size,
                                      float *weight, float *grad, float *momentum_buf,
                                      int32_t zero_grad)
{
    int32_t i;
    float v = 0.0f;

    if (!sgd_args_ok(params, size, weight, grad, momentum_buf)) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (i = 0; i < size; i++) {
        if (params->momentum != 0.0f) {
            v = momentum_buf[i];
        }
        weight[i] = sgd_element(params, weight[i], grad[i], &v);
        if (params->momentum != 0.0f) {
            momentum_buf[i] = v;
        }
        if (zero_grad != 0) {
            grad[i] = 0.0f;
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_sgd_step_finite_f32(const mcutl_f32_sgd_params_t *params, int32_t size,
                                             const float *weight, const float *grad,
                                             const float *momentum_buf)
{
    int32_t i;
    float v = 0.0f;

    if (!sgd_args_ok(params, size, weight, grad, momentum_buf)) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (i = 0; i < size; i++) {
        float w;
        if (params->momentum != 0.0f) {
            v = momentum_buf[i];
        }
        w = sgd_element(params, weight[i], grad[i], &v);
        if (!f32_is_finite(w) || !f32_is_finite(v)) {
            return MCUTL_F32_NONFINITE;
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

static int adam_args_ok(const mcutl_f32_adam_params_t *params, int32_t step, int32_t size,
                        const float *weight, const float *grad, const float *exp_avg,
                        const float *exp_avg_sq)
{
    return params != 0 && step >= 1 && size >= 0 && params->lr >= 0.0f &&
           params->beta1 >= 0.0f && params->beta1 < 1.0f && params->beta2 >= 0.0f &&
           params->beta2 < 1.0f && params->eps > 0.0f && params->weight_decay >= 0.0f &&
           (size == 0 || (weight != 0 && grad != 0 && exp_avg != 0 && exp_avg_sq != 0));
}

/* The step's bias corrections: lr / (1 - b1^t) and sqrt(1 - b2^t). */
typedef struct {
    float step_size;
    float bc2_sqrt;
    float b1c;
    float b2c;
} adam_coeffs_t;

static adam_coeffs_t adam_coeffs(const mcutl_f32_adam_params_t *p, int32_t step)
{
    adam_coeffs_t c;
    c.step_size = p->lr / one_minus_pow(p->beta1, step);
    c.bc2_sqrt = mcutl_sqrtf(one_minus_pow(p->beta2, step));
    c.b1c = 1.0f - p->beta1;
    c.b2c = 1.0f - p->beta2;
    return c;
}

/* One element of an Adam step: the new moments *m, *v and the new weight. */
static inline float adam_element(const mcutl_f32_adam_params_t *p, const adam_coeffs_t *c,
                                 float w, float g, float *m, float *v)
{
    if (p->weight_decay != 0.0f) {
        g += p->weight_decay * w;
    }
    *m = p->beta1 * *m + c->b1c * g;
    *v = p->beta2 * *v + c->b2c * (g * g);
    return w - c->step_size * (*m / (mcutl_sqrtf(*v) / c->bc2_sqrt + p->eps));
}

mcutl_f32_status_t mcutl_adam_step_f32(const mcutl_f32_adam_params_t *params, int32_t step,
                                       int32_t size, float *weight, float *grad,
                                       float *exp_avg, float *exp_avg_sq, int32_t zero_grad)
{
    int32_t i;
    adam_coeffs_t c;

    if (!adam_args_ok(params, step, size, weight, grad, exp_avg, exp_avg_sq)) {
        return MCUTL_F32_ARG_ERROR;
    }
    c = adam_coeffs(params, step);
    for (i = 0; i < size; i++) {
        weight[i] = adam_element(params, &c, weight[i], grad[i], &exp_avg[i], &exp_avg_sq[i]);
        if (zero_grad != 0) {
            grad[i] = 0.0f;
        }
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_adam_step_finite_f32(const mcutl_f32_adam_params_t *params,
                                              int32_t step, int32_t size, const float *weight,
                                              const float *grad, const float *exp_avg,
                                              const float *exp_avg_sq)
{
    int32_t i;
    adam_coeffs_t c;

    if (!adam_args_ok(params, step, size, weight, grad, exp_avg, exp_avg_sq)) {
        return MCUTL_F32_ARG_ERROR;
    }
    c = adam_coeffs(params, step);
    for (i = 0; i < size; i++) {
        float m = exp_avg[i];
        float v = exp_avg_sq[i];
        float w = adam_element(params, &c, weight[i], grad[i], &m, &v);
        if (!f32_is_finite(w) || !f32_is_finite(m) || !f32_is_finite(v)) {
            return MCUTL_F32_NONFINITE;
        }
    }
    return MCUTL_F32_OK;
}
