/*
 * Internal helpers of the float32 kernels (not part of the public API).
 */
#ifndef MCUTL_F32_INTERNAL_H
#define MCUTL_F32_INTERNAL_H

#include <stdint.h>

#include "mcutl/f32.h"

/** Element count of a dims struct with every field >= 1, or -1 if a field is < 1
 *  or the count exceeds INT32_MAX. */
static inline int32_t f32_dims_count(const mcutl_f32_dims_t *d)
{
    int64_t count;
    if (d == 0 || d->n < 1 || d->h < 1 || d->w < 1 || d->c < 1) {
        return -1;
    }
    count = (int64_t)d->n * d->h;
    if (count > INT32_MAX) {
        return -1;
    }
    count *= d->w;
    if (count > INT32_MAX) {
        return -1;
    }
    count *= d->c;
    return count > INT32_MAX ? -1 : (int32_t)count;
}

/** a * b for a, b >= 0, or -1 if the product exceeds INT32_MAX. */
static inline int32_t f32_mul_count(int32_t a, int32_t b)
{
    int64_t p = (int64_t)a * b;
    return p > INT32_MAX ? -1 : (int32_t)p;
}

/**
 * Half-open range [*lo, *hi) of output positions o in [0, out_size) whose tap at
 * offset k_off (= k * dilation) reads an input position inside [0, in_size):
 * 0 <= o * stride - pad + k_off < in_size. The range may be empty (*lo >= *hi).
 */
static inline void f32_tap_range(int32_t k_off, int32_t pad, int32_t stride, int32_t in_size,
                                 int32_t out_size, int32_t *lo, int32_t *hi)
{
    int32_t a = pad - k_off;
    int32_t b = in_size - 1 + pad - k_off;
    int32_t first = a <= 0 ? 0 : (a + stride - 1) / stride;
    int32_t last = b < 0 ? -1 : b / stride;
    if (last > out_size - 1) {
        last = out_size - 1;
    }
    *lo = first;
    *hi = last + 1 > first ? last + 1 : first;
}

/**
 * Checks a conv geometry: input/weight/output dims, params ranges and the
 * channel/group relation for an OHWI weight [C_out, KH, KW, C_in / groups].
 * Returns 1 if consistent.
 */
static inline int f32_conv_geometry_ok(const mcutl_f32_conv_params_t *p,
                                       const mcutl_f32_dims_t *in,
                                       const mcutl_f32_dims_t *w,
                                       const mcutl_f32_dims_t *out)
{
    if (p == 0 || f32_dims_count(in) < 0 || f32_dims_count(w) < 0 ||
        f32_dims_count(out) < 0) {
        return 0;
    }
    if (p->stride_h < 1 || p->stride_w < 1 || p->dilation_h < 1 || p->dilation_w < 1 ||
        p->pad_top < 0 || p->pad_left < 0 || p->groups < 1) {
        return 0;
    }
    if (p->pad_top > INT32_MAX / 4 || p->pad_left > INT32_MAX / 4 ||
        (int64_t)(w->h - 1) * p->dilation_h > INT32_MAX / 4 ||
        (int64_t)(w->w - 1) * p->dilation_w > INT32_MAX / 4 ||
        (int64_t)(out->h - 1) * p->stride_h > INT32_MAX / 4 ||
        (int64_t)(out->w - 1) * p->stride_w > INT32_MAX / 4) {
        return 0; /* keeps every index computation inside int32 */
    }
    return in->n == out->n && out->c == w->n && (int64_t)p->groups * w->c == in->c &&
           out->c % p->groups == 0;
}

/** Integer value of a float's bit pattern and back (C99 union punning). */
typedef union {
    float f;
    uint32_t u;
} f32_bits_t;

static inline uint32_t f32_to_bits(float x)
{
    f32_bits_t b;
    b.f = x;
    return b.u;
}

static inline float f32_from_bits(uint32_t u)
{
    f32_bits_t b;
    b.u = u;
    return b.f;
}

/** 1 if x is neither infinite nor NaN (by its exponent bits: independent of FP flags). */
static inline int f32_is_finite(float x)
{
    return (f32_to_bits(x) & 0x7F800000u) != 0x7F800000u;
}

#endif /* MCUTL_F32_INTERNAL_H */
