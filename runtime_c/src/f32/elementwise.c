/*
 * Element-wise add (Rep-Net connector) and y += alpha * x (gradients that meet).
 */
#include <stdint.h>

#include "f32_internal.h"
#include "mcutl/f32.h"

mcutl_f32_status_t mcutl_add_f32(const float *a, const float *b, int32_t size, float *output)
{
    int32_t i;

    if (size < 0 || (size > 0 && (a == 0 || b == 0 || output == 0))) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (i = 0; i < size; i++) {
        output[i] = a[i] + b[i];
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_axpy_f32(int32_t size, float alpha, const float *x, float *y)
{
    int32_t i;

    if (size < 0 || (size > 0 && (x == 0 || y == 0))) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (i = 0; i < size; i++) {
        y[i] += alpha * x[i];
    }
    return MCUTL_F32_OK;
}
