/*
 * mcutl int8 kernels: internal fixed-point helpers (not part of the public API).
 *
 * TFLite's "double rounding" requantisation, written from its specification:
 *   SaturatingRoundingDoublingHighMul(a, b) = a * b / 2^31 rounded to nearest,
 *     exact ties upward (+0.5 -> 1, -0.5 -> 0), saturating a == b == INT32_MIN
 *     to INT32_MAX;
 *   RoundingDivideByPOT(x, e) = x / 2^e rounded to nearest, ties away from zero;
 *   MultiplyByQuantizedMultiplier(x, m, s) = RoundingDivideByPOT(
 *     SaturatingRoundingDoublingHighMul(x * 2^max(s, 0), m), max(-s, 0)).
 * The pre-shift x * 2^s wraps modulo 2^32 (TFLite's int32 multiplication does the
 * same on every target in practice); the numpy model in mcutl/quant/fixedpoint.py
 * mirrors that.
 *
 * Only int32_t/int64_t/uint32_t arithmetic whose behaviour C99 defines is used,
 * except the conversion of an out-of-range uint32_t to int32_t, which is
 * implementation-defined and modular on GCC/Clang/armcc.
 */
#ifndef MCUTL_INT8_FIXEDPOINT_H
#define MCUTL_INT8_FIXEDPOINT_H

#include <stdint.h>

#define MCUTL_INT8_MIN (-128)
#define MCUTL_INT8_MAX 127

/* Arithmetic shift right of a signed value without relying on the
 * implementation-defined behaviour of >> on negative operands. */
static inline int32_t mcutl_asr32(int32_t x, int32_t e)
{
    return x < 0 ? ~(~x >> e) : (x >> e);
}

/* a * b / 2^31 to nearest, ties upward (the nudge 1 - 2^30 for negative products,
 * then truncation toward zero); saturates INT32_MIN * INT32_MIN. */
static inline int32_t mcutl_sat_rounding_doubling_high_mul(int32_t a, int32_t b)
{
    int64_t ab;
    int64_t v;
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    /* |ab| <= 2^62 - 2^31 here, so adding the nudge cannot overflow. */
    v = ab + (ab >= 0 ? (INT64_C(1) << 30) : (INT64_C(1) - (INT64_C(1) << 30)));
    /* Division by 2^31 truncating toward zero (as C++ integer division). */
    return (int32_t)(v >= 0 ? (v >> 31) : -((-v) >> 31));
}

/* x / 2^exponent rounded to nearest, ties away from zero; 0 <= exponent <= 31. */
static inline int32_t mcutl_rounding_divide_by_pot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)((UINT32_C(1) << exponent) - UINT32_C(1));
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return mcutl_asr32(x, exponent) + (remainder > threshold ? 1 : 0);
}

/* x << shift with two's-complement wrap-around, 0 <= shift <= 31. */
static inline int32_t mcutl_wrapping_shl32(int32_t x, int32_t shift)
{
    return (int32_t)((uint32_t)x << shift);
}

/* TFLite's MultiplyByQuantizedMultiplier (double rounding). */
static inline int32_t mcutl_requantize(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return mcutl_rounding_divide_by_pot(
        mcutl_sat_rounding_doubling_high_mul(mcutl_wrapping_shl32(x, left), multiplier), right);
}

static inline int32_t mcutl_clamp32(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Validity of an int8-domain activation range. */
static inline int mcutl_act_range_ok(int32_t act_min, int32_t act_max)
{
    return act_min >= MCUTL_INT8_MIN && act_max <= MCUTL_INT8_MAX && act_min <= act_max;
}

static inline int mcutl_zero_point_ok(int32_t zp)
{
    return zp >= MCUTL_INT8_MIN && zp <= MCUTL_INT8_MAX;
}

/* Shifts mcutl_requantize() accepts: what QuantizeMultiplier() produces. */
static inline int mcutl_shifts_ok(const int32_t *shift, int32_t count)
{
    int32_t i;
    for (i = 0; i < count; ++i) {
        if (shift[i] < -31 || shift[i] > 31) {
            return 0;
        }
    }
    return 1;
}

#endif /* MCUTL_INT8_FIXEDPOINT_H */
