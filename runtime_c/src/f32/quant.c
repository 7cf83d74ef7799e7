/*
 * int8 <-> float32 conversions with TFLite's DEQUANTIZE / QUANTIZE semantics.
 */
#include <stdint.h>

#include "f32_internal.h"
#include "mcutl/f32.h"

mcutl_f32_status_t mcutl_dequantize_s8_f32(const int8_t *input, int32_t size, float scale,
                                           int32_t zero_point, float *output)
{
    int32_t i;

    if (size < 0 || (size > 0 && (input == 0 || output == 0)) || zero_point < -128 ||
        zero_point > 127) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (i = 0; i < size; i++) {
        /* (float)(q - zp) is exact; the product is rounded once, as TFLite's double
         * product (exact: 24 x 9 bits) rounded to float */
        output[i] = scale * (float)((int32_t)input[i] - zero_point);
    }
    return MCUTL_F32_OK;
}

/* round half away from zero of q (|q| <= 2^24 or a float integer) to int32 */
static int32_t round_half_away(float q)
{
    const float a = q < 0.0f ? -q : q;
    int32_t r = (int32_t)a;             /* truncation, |a| < 2^31 */
    if (a - (float)r >= 0.5f) {         /* exact: the fraction of a float */
        r += 1;
    }
    return q < 0.0f ? -r : r;
}

mcutl_f32_status_t mcutl_quantize_f32_s8(const float *input, int32_t size, float scale,
                                         int32_t zero_point, int8_t *output)
{
    int32_t i;

    if (size < 0 || (size > 0 && (input == 0 || output == 0)) || !(scale > 0.0f) ||
        zero_point < -128 || zero_point > 127) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (i = 0; i < size; i++) {
        const float q = input[i] / scale; /* float32 division, as TFLite */
        int32_t v;
        if (q != q) {
            v = zero_point;
        } else if (q >= 512.0f) {
            v = 127;
        } else if (q <= -512.0f) {
            v = -128;
        } else {
            v = round_half_away(q) + zero_point;
            v = v < -128 ? -128 : (v > 127 ? 127 : v);
        }
        output[i] = (int8_t)v;
    }
    return MCUTL_F32_OK;
}

mcutl_f32_status_t mcutl_quantize_bias_f32_s32(const float *input, int32_t size,
                                               const float *scale, int32_t *output)
{
    int32_t i;

    if (size < 0 || (size > 0 && (input == 0 || scale == 0 || output == 0))) {
        return MCUTL_F32_ARG_ERROR;
    }
    for (i = 0; i < size; i++) {
        const float q = input[i] / scale[i]; /* float32 division, as the host reference */
        int32_t v;
        if (!(scale[i] > 0.0f) || q != q) {
            v = 0;
        } else if (q >= 2147483520.0f) { /* the largest float below 2^31 */
            v = 2147483647;
        } else if (q <= -2147483520.0f) {
            v = -2147483647 - 1;
        } else {
            v = round_half_away(q);
        }
        output[i] = v;
    }
    return MCUTL_F32_OK;
}
