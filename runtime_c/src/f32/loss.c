/*
 * Softmax cross-entropy with integer labels and label smoothing.
 * Semantics: mcutl/f32.h.
 *
 * Accuracy when the prediction is confident: with m the (first) arg-max and
 * s = sum_{j != m} e^(z_j - z_m), the normaliser is 1 + s. The loss uses
 * log1p(s) and the arg-max's gradient is formed as ((1 - t_m) - t_m s) / (1 + s)
 * instead of 1 / (1 + s) - t_m, so a loss or gradient of 1e-7 keeps its relative
 * accuracy instead of drowning in the rounding of 1 + s.
 */
#include <stdint.h>

#include "f32_internal.h"
#include "mcutl/f32.h"

float mcutl_softmax_xent_f32(const float *logits, const int32_t *labels, int32_t batches,
                             int32_t classes, float label_smoothing, float grad_scale,
                             float *probs, float *grad_logits)
{
    const float eps = label_smoothing;
    float total = 0.0f;
    float off; /* eps / K: smoothed target of every class */
    float on;  /* 1 - eps + eps / K: target of the label */
    int32_t b, j;

    if (logits == 0 || labels == 0 || batches < 1 || classes < 1 ||
        f32_mul_count(batches, classes) < 0 || !(eps >= 0.0f && eps <= 1.0f) ||
        (probs != 0 && probs == grad_logits)) {
        return -1.0f;
    }
    for (b = 0; b < batches; b++) {
        if (labels[b] < 0 || labels[b] >= classes) {
            return -1.0f;
        }
    }
    off = eps / (float)classes;
    on = (1.0f - eps) + off;
    for (b = 0; b < batches; b++) {
        const float *z = logits + b * classes;
        const int32_t y = labels[b];
        int32_t m = 0;
        float zmax = z[0];
        float rest = 0.0f;        /* s = sum_{j != m} e^(z_j - zmax) */
        float sum_shifted = 0.0f; /* sum_j (z_j - zmax), for the smoothing term */
        float loss;
        for (j = 1; j < classes; j++) {
            if (z[j] > zmax) {
                zmax = z[j];
                m = j;
            }
        }
        for (j = 0; j < classes; j++) {
            const float d = z[j] - zmax;
            if (j != m) {
                rest += mcutl_expf(d);
            }
            sum_shifted += d;
        }
        /* -log p_j = log(1 + s) - (z_j - zmax); loss = sum_j t_j (-log p_j) */
        loss = mcutl_log1pf(rest) - (1.0f - eps) * (z[y] - zmax);
        if (eps > 0.0f) {
            loss -= off * sum_shifted;
        }
        total += loss;
        if (probs != 0 || grad_logits != 0) {
            const float sum = 1.0f + rest;
            const float t_m = m == y ? on : off;
            const float one_minus_t_m = m == y ? eps - off : 1.0f - off;
            const float zm = zmax;
            for (j = 0; j < classes; j++) {
                /* read z[j] before writing: probs / grad_logits may alias logits */
                float p;
                float g;
                if (j == m) {
                    p = 1.0f / sum;
                    g = (one_minus_t_m - t_m * rest) / sum;
                } else {
                    p = mcutl_expf(z[j] - zm) / sum;
                    g = p - (j == y ? on : off);
                }
                if (probs != 0) {
                    probs[b * classes + j] = p;
                }
                if (grad_logits != 0) {
                    grad_logits[b * classes + j] = grad_scale * g;
                }
            }
        }
    }
    return total / (float)batches;
}
