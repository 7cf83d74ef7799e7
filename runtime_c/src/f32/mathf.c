/*
 * exp, log, log1p and sqrt in float32 without libm, bit-identical on every IEEE 754
 * target when compiled with -ffp-contract=off (see mcutl/f32.h).
 *
 * The polynomial coefficients are minimax fits (Lawson-weighted least squares in
 * float64, rounded to float32) of
 *   (e^r - 1 - r) / r^2          on |r| <= 0.3536 (relative error of e^r 3.5e-9)
 *   (2 atanh(s) - 2 s) / (s z)   in z = s^2, |s| <= 0.1718 (4.8e-12)
 * and were checked against a float64 exp/log over every float32 in the ranges
 * the kernels use (tests/test_f32_kernels.py samples them again).
 */
#include <stdint.h>

#include "f32_internal.h"
#include "mcutl/f32.h"

#define F32_INF_BITS 0x7f800000u
#define F32_QNAN_BITS 0x7fc00000u

/* ln 2 split so that n * LN2_HI is exact for |n| < 512 (15 significant bits). */
static const float LN2_HI = 6.931457520e-01f; /* 0x3f317200 */
static const float LN2_LO = 1.428606765e-06f; /* 0x35bfbe8e */
static const float INV_LN2 = 1.442695022e+00f;

/* e^r = 1 + r + r^2 (E0 + r (E1 + r (E2 + r (E3 + r E4)))) */
static const float E0 = 4.999999404e-01f;
static const float E1 = 1.666650921e-01f;
static const float E2 = 4.166853055e-02f;
static const float E3 = 8.370140567e-03f;
static const float E4 = 1.381165115e-03f;

/* 2 atanh(s) = 2 s + s R(z), R(z) = z (L1 + z (L2 + z (L3 + z L4))) */
static const float L1 = 6.666666269e-01f;
static const float L2 = 4.000033736e-01f;
static const float L3 = 2.853720784e-01f;
static const float L4 = 2.358430624e-01f;

/* 2^e for e in [-126, 127] (a normal float, exact). */
static float pow2i(int32_t e)
{
    return f32_from_bits((uint32_t)(e + 127) << 23);
}

float mcutl_expf(float x)
{
    float t;
    float r;
    float r2;
    float p;
    float fn;
    int32_t n;

    if (x != x) {
        return x; /* NaN */
    }
    if (x > 88.72283172607421875f) { /* largest x with a finite e^x */
        return f32_from_bits(F32_INF_BITS);
    }
    if (x < -104.0f) { /* e^x < 2^-150: rounds to 0 */
        return 0.0f;
    }
    /* x = n ln2 + r, n = round(x / ln2), |r| <= ln2/2 (+ a rounding sliver) */
    t = x * INV_LN2;
    n = (int32_t)(t < 0.0f ? t - 0.5f : t + 0.5f);
    fn = (float)n;
    r = (x - fn * LN2_HI) - fn * LN2_LO; /* x - n*LN2_HI is exact (Sterbenz) */
    r2 = r * r;
    p = 1.0f + (r + r2 * (E0 + r * (E1 + r * (E2 + r * (E3 + r * E4)))));
    /* scale by 2^n exactly; split the power where 2^n is not a normal float */
    if (n > 127) {
        return p * pow2i(n - 1) * 2.0f;
    }
    if (n < -126) {
        return (p * pow2i(n + 100)) * pow2i(-100); /* one rounding into subnormals */
    }
    return p * pow2i(n);
}

/* log(1 + f) + k ln2 for f in [sqrt(2)/2 - 1, sqrt(2) - 1] given exactly and an
 * integer k (as a float): f - f^2/2 + s (f^2/2 + R) is f plus a small correction,
 * so the result is within 1 ulp. */
static float log_kernel(float f, float dk)
{
    const float s = f / (2.0f + f);
    const float z = s * s;
    const float rz = z * (L1 + z * (L2 + z * (L3 + z * L4)));
    const float hfsq = 0.5f * f * f;
    return dk * LN2_HI - ((hfsq - (s * (hfsq + rz) + dk * LN2_LO)) - f);
}

float mcutl_logf(float x)
{
    uint32_t u = f32_to_bits(x);
    int32_t e = 0;
    float m;

    if (x != x) {
        return x; /* NaN */
    }
    if (x < 0.0f) {
        return f32_from_bits(F32_QNAN_BITS);
    }
    if (x == 0.0f) {
        return -f32_from_bits(F32_INF_BITS);
    }
    if (u == F32_INF_BITS) {
        return x;
    }
    if (u < 0x00800000u) { /* subnormal: scale by 2^25 (exact) */
        x *= 33554432.0f;
        u = f32_to_bits(x);
        e = -25;
    }
    e += (int32_t)(u >> 23) - 127;
    m = f32_from_bits((u & 0x007fffffu) | 0x3f800000u); /* [1, 2) */
    if (m > 1.41421354f) {
        m *= 0.5f; /* [sqrt(2)/2, sqrt(2)) */
        e += 1;
    }
    return log_kernel(m - 1.0f, (float)e); /* m - 1 is exact */
}

float mcutl_log1pf(float x)
{
    float u;
    float c;

    if (x >= -0.292893201f && x <= 0.414213538f) {
        return log_kernel(x, 0.0f); /* x itself is the exact f: no rounding of 1 + x */
    }
    if (!(x > -1.0f) || x > 1e30f) {
        return mcutl_logf(1.0f + x); /* NaN, x < -1: NaN; -1: -inf; huge, +inf */
    }
    /* u = 1 + x rounded; c = (1 + x) - u exactly (Sterbenz), log(1 + x) = log(u) + c/u */
    u = 1.0f + x;
    c = x < 1.0f ? x - (u - 1.0f) : 1.0f - (u - x);
    return mcutl_logf(u) + c / u;
}

#if defined(__GNUC__) && defined(__NO_MATH_ERRNO__) && !defined(MCUTL_F32_PORTABLE_SQRT) && \
    (defined(__x86_64__) || defined(__aarch64__) || (defined(__ARM_FP) && (__ARM_FP & 4)))
#define MCUTL_F32_HW_SQRT 1
#endif

#ifdef MCUTL_F32_HW_SQRT
float mcutl_sqrtf(float x)
{
    return __builtin_sqrtf(x); /* sqrtss / VSQRT.F32 / fsqrt: IEEE correctly rounded */
}
#else
float mcutl_sqrtf(float x)
{
    uint32_t u = f32_to_bits(x);
    int32_t e;
    uint32_t mant;
    uint64_t rem;
    uint64_t root = 0;
    uint64_t bit = (uint64_t)1 << 48;
    uint32_t q;

    if (x != x || x == 0.0f || u == F32_INF_BITS) {
        return x; /* NaN, +-0, +inf */
    }
    if (x < 0.0f) {
        return f32_from_bits(F32_QNAN_BITS);
    }
    /* x = mant * 2^e with mant an integer in [2^23, 2^24) */
    e = (int32_t)(u >> 23);
    mant = u & 0x007fffffu;
    if (e == 0) { /* subnormal: normalise */
        e = 1;
        while ((mant & 0x00800000u) == 0) {
            mant <<= 1;
            e -= 1;
        }
    } else {
        mant |= 0x00800000u;
    }
    e -= 127 + 23;
    /* make e odd, so that N = mant << 25 in [2^48, 2^50) has an even exponent e - 25 */
    if ((e & 1) == 0) {
        mant <<= 1;
        e -= 1;
    }
    /* root = floor(sqrt(N)) in [2^24, 2^25), digit by digit; rem = N - root^2 */
    rem = (uint64_t)mant << 25;
    while (bit != 0) {
        if (rem >= root + bit) {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    /* sqrt(x) = sqrt(N) 2^((e - 25) / 2); keep 24 bits, round to nearest (a square
     * root is never exactly halfway, so the remainder needs no tie rule) */
    q = (uint32_t)(root >> 1) + (uint32_t)(root & 1);
    e = (e - 25) / 2 + 1;
    if (q == 0x01000000u) {
        q >>= 1;
        e += 1;
    }
    return f32_from_bits(((uint32_t)(e + 23 + 127) << 23) | (q & 0x007fffffu));
}
#endif

/* cos(r) for r in [0, pi/4] and sin(r) for r in [0, pi/4]: Taylor series to r^12 / r^13
 * (the truncation error is below 2e-12 there), Horner in float32. */
static float cos_small(float r)
{
    float z = r * r;
    return 1.0f + z * (-0.5f + z * (4.166666667e-02f + z * (-1.388888889e-03f +
                  z * (2.480158730e-05f + z * (-2.755731922e-07f + z * 2.087675699e-09f)))));
}

static float sin_small(float r)
{
    float z = r * r;
    return r * (1.0f + z * (-1.666666667e-01f + z * (8.333333333e-03f + z * (-1.984126984e-04f +
                z * (2.755731922e-06f + z * (-2.505210839e-08f + z * 1.605904384e-10f))))));
}

float mcutl_cosf_pi(float x)
{
    const float pi_4 = 7.853981634e-01f;
    const float pi_2 = 1.570796327e+00f;
    const float pi = 3.141592654e+00f;
    if (x < 0.0f) {
        x = -x;
    }
    if (!(x <= pi)) {
        return x > pi ? -1.0f : x; /* outside the range: clamp; NaN stays NaN */
    }
    if (x <= pi_4) {
        return cos_small(x);
    }
    if (x <= pi_2) {
        return sin_small(pi_2 - x);
    }
    if (x <= 3.0f * pi_4) {
        return -sin_small(x - pi_2);
    }
    return -cos_small(pi - x);
}
