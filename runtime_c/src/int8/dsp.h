/*
 * dsp.h - what the DSP kernel variants (*_dsp.c) share (not part of the public API):
 * the Armv7E-M SIMD instructions they use, and an exact fast requantisation.
 *
 * On a core with the DSP extension (Cortex-M4/M7: __ARM_FEATURE_DSP) the instructions
 * are the ACLE intrinsics (SMMULR, which ACLE lacks, is one line of inline assembly).
 * Elsewhere (the host build, a Cortex-M0) each is a C function computing the same
 * 32-bit result, so the DSP kernels compile and give the same bits everywhere: the host
 * tests exercise the same code paths that run on the device.
 */
#ifndef MCUTL_INT8_DSP_H
#define MCUTL_INT8_DSP_H

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#define MCUTL_HAVE_DSP 1
#else
#define MCUTL_HAVE_DSP 0
#endif

/* Code GCC must not move instructions across (an empty volatile asm: its scheduler
 * treats one as a barrier). Between the unrolled steps of an inner loop it stops the
 * steps' loads from being hoisted together, which needs more registers than there are
 * and spills the accumulators. */
#define MCUTL_SCHED_BARRIER() __asm__ __volatile__("")

/* Functions that must be inlined to be specialised by their constant arguments. */
#define MCUTL_INLINE static inline __attribute__((always_inline))

/* An unaligned 32-bit load (one LDR on Cortex-M3 and later). */
static inline uint32_t mcutl_ld32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void mcutl_st32(void *p, uint32_t v)
{
    memcpy(p, &v, sizeof v);
}

/* The low 16 bits of v; the int16 halves of x as values (no implementation-defined
 * conversions). */
static inline uint32_t mcutl_half(int32_t v)
{
    return (uint32_t)v & 0xFFFFu;
}

static inline int32_t mcutl_lo16(uint32_t x)
{
    return (int32_t)(x & 0xFFFFu) - (int32_t)((x & 0x8000u) << 1);
}

static inline int32_t mcutl_hi16(uint32_t x)
{
    return mcutl_lo16(x >> 16);
}

#if MCUTL_HAVE_DSP

/* Bytes 0 and 2 of x, sign-extended into the two int16 halves (SXTB16). */
static inline uint32_t mcutl_sxtb16(uint32_t x)
{
    return (uint32_t)__sxtb16((int8x4_t)x);
}

/* Bytes 1 and 3 of x, sign-extended (SXTB16 x, ROR #8: one instruction, which GCC 12
 * does not form from __sxtb16 of a rotation). */
static inline uint32_t mcutl_sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

/* Halfword-wise a - b, int16 wrap-around (SSUB16). */
static inline uint32_t mcutl_ssub16(uint32_t a, uint32_t b)
{
    return (uint32_t)__ssub16((int16x2_t)a, (int16x2_t)b);
}

/* a + bytes 0 and 2 of x sign-extended, halfword-wise with wrap-around (SXTAB16); and
 * a + bytes 1 and 3 (SXTAB16 x, ROR #8). */
static inline uint32_t mcutl_sxtab16(uint32_t a, uint32_t x)
{
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2" : "=r"(r) : "r"(a), "r"(x));
    return r;
}

static inline uint32_t mcutl_sxtab16_ror8(uint32_t a, uint32_t x)
{
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}

/* acc + lo(a) * lo(b) + hi(a) * hi(b), int16 halves (SMLAD). */
static inline int32_t mcutl_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlad((int16x2_t)a, (int16x2_t)b, acc);
}

/* x saturated to int16 (SSAT #16). */
static inline int32_t mcutl_ssat16(int32_t x)
{
    return __ssat(x, 16);
}

/* (lo & 0xFFFF) | (hi << 16): two int16 in one register (PKHBT). */
static inline uint32_t mcutl_pack16x2(int32_t lo, int32_t hi)
{
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(lo), "r"(hi));
    return r;
}

/* Halfword-wise a + b, saturated to int16 (QADD16). */
static inline uint32_t mcutl_qadd16(uint32_t a, uint32_t b)
{
    return (uint32_t)__qadd16((int16x2_t)a, (int16x2_t)b);
}

/* (lo >> 16) | (hi & 0xFFFF0000): the high halves of two registers in one (PKHTB). */
static inline uint32_t mcutl_pack_hi16x2(uint32_t lo, uint32_t hi)
{
    uint32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(hi), "r"(lo));
    return r;
}

/* Halfword-wise max(a, b) and min(a, b): SSUB16 sets the GE flags, SEL picks by them
 * (one asm statement, so nothing comes between the two). */
static inline uint32_t mcutl_max16x2(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("ssub16 %0, %1, %2\n\tsel %0, %1, %2" : "=&r"(r) : "r"(a), "r"(b) : "cc");
    return r;
}

static inline uint32_t mcutl_min16x2(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("ssub16 %0, %2, %1\n\tsel %0, %1, %2" : "=&r"(r) : "r"(a), "r"(b) : "cc");
    return r;
}

/* Two consecutive words from a 4-byte aligned address, and the address advanced past
 * them: one LDRD with write-back (GCC 12 does not pair the two loads itself). */
static inline const uint32_t *mcutl_ld2x32_inc(const uint32_t *p, uint32_t *a, uint32_t *b)
{
    uint32_t x, y;
    __asm__("ldrd %0, %1, [%2], #8"
            : "=r"(x), "=r"(y), "+r"(p)
            : "m"(*(const uint64_t *)p));
    *a = x;
    *b = y;
    return p;
}

/* A word from any address, and the address advanced past it (LDR with post-increment:
 * the pointer step costs no instruction). */
static inline uint32_t mcutl_ld32_inc(const int8_t **p)
{
    uint32_t v;
    const int8_t *q = *p;
    __asm__("ldr %0, [%1], #4" : "=r"(v), "+r"(q) : "m"(*(const int8_t(*)[4])q));
    *p = q;
    return v;
}

/* The same with the address advanced by 16 bytes. */
static inline const uint32_t *mcutl_ld2x32_inc16(const uint32_t *p, uint32_t *a, uint32_t *b)
{
    uint32_t x, y;
    __asm__("ldrd %0, %1, [%2], #16"
            : "=r"(x), "=r"(y), "+r"(p)
            : "m"(*(const uint64_t *)p));
    *a = x;
    *b = y;
    return p;
}

/* (a * b + 2^31) >> 32, rounded high word of the 64-bit product (SMMULR). */
static inline int32_t mcutl_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* acc + ((a * b + 2^31) >> 32): SMMULR plus an addend, one instruction (SMMLAR). */
static inline int32_t mcutl_smmlar(int32_t a, int32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}

/* x saturated to int8 (SSAT #8). */
static inline int32_t mcutl_ssat8(int32_t x)
{
    return __ssat(x, 8);
}

#else /* the same results in C */

static inline int32_t mcutl_byte(uint32_t x, int which)
{
    const uint32_t b = (x >> (8 * which)) & 0xFFu;
    return (int32_t)b - (int32_t)((b & 0x80u) << 1);
}

static inline uint32_t mcutl_sxtb16(uint32_t x)
{
    return mcutl_half(mcutl_byte(x, 0)) | (mcutl_half(mcutl_byte(x, 2)) << 16);
}

static inline uint32_t mcutl_sxtb16_ror8(uint32_t x)
{
    return mcutl_half(mcutl_byte(x, 1)) | (mcutl_half(mcutl_byte(x, 3)) << 16);
}

static inline uint32_t mcutl_ssub16(uint32_t a, uint32_t b)
{
    return mcutl_half(mcutl_lo16(a) - mcutl_lo16(b)) |
           (mcutl_half(mcutl_hi16(a) - mcutl_hi16(b)) << 16);
}

static inline uint32_t mcutl_sxtab16(uint32_t a, uint32_t x)
{
    return mcutl_half(mcutl_lo16(a) + mcutl_byte(x, 0)) |
           (mcutl_half(mcutl_hi16(a) + mcutl_byte(x, 2)) << 16);
}

static inline uint32_t mcutl_sxtab16_ror8(uint32_t a, uint32_t x)
{
    return mcutl_half(mcutl_lo16(a) + mcutl_byte(x, 1)) |
           (mcutl_half(mcutl_hi16(a) + mcutl_byte(x, 3)) << 16);
}

static inline int32_t mcutl_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    /* modular, as the instruction (the kernels' sums never wrap) */
    return (int32_t)((uint32_t)acc + (uint32_t)(mcutl_lo16(a) * mcutl_lo16(b)) +
                     (uint32_t)(mcutl_hi16(a) * mcutl_hi16(b)));
}

static inline const uint32_t *mcutl_ld2x32_inc(const uint32_t *p, uint32_t *a, uint32_t *b)
{
    *a = p[0];
    *b = p[1];
    return p + 2;
}

static inline const uint32_t *mcutl_ld2x32_inc16(const uint32_t *p, uint32_t *a, uint32_t *b)
{
    *a = p[0];
    *b = p[1];
    return p + 4;
}

static inline uint32_t mcutl_ld32_inc(const int8_t **p)
{
    const uint32_t v = mcutl_ld32(*p);
    *p += 4;
    return v;
}

static inline int32_t mcutl_ssat16(int32_t x)
{
    return x < -32768 ? -32768 : (x > 32767 ? 32767 : x);
}

static inline uint32_t mcutl_pack16x2(int32_t lo, int32_t hi)
{
    return mcutl_half(lo) | (mcutl_half(hi) << 16);
}

static inline uint32_t mcutl_pack_hi16x2(uint32_t lo, uint32_t hi)
{
    return (lo >> 16) | (hi & 0xFFFF0000u);
}

static inline int32_t mcutl_sat16(int32_t x)
{
    return x < -32768 ? -32768 : (x > 32767 ? 32767 : x);
}

static inline uint32_t mcutl_qadd16(uint32_t a, uint32_t b)
{
    return mcutl_half(mcutl_sat16(mcutl_lo16(a) + mcutl_lo16(b))) |
           (mcutl_half(mcutl_sat16(mcutl_hi16(a) + mcutl_hi16(b))) << 16);
}

static inline uint32_t mcutl_max16x2(uint32_t a, uint32_t b)
{
    return mcutl_half(mcutl_lo16(a) >= mcutl_lo16(b) ? mcutl_lo16(a) : mcutl_lo16(b)) |
           (mcutl_half(mcutl_hi16(a) >= mcutl_hi16(b) ? mcutl_hi16(a) : mcutl_hi16(b)) << 16);
}

static inline uint32_t mcutl_min16x2(uint32_t a, uint32_t b)
{
    return mcutl_half(mcutl_lo16(b) >= mcutl_lo16(a) ? mcutl_lo16(a) : mcutl_lo16(b)) |
           (mcutl_half(mcutl_hi16(b) >= mcutl_hi16(a) ? mcutl_hi16(a) : mcutl_hi16(b)) << 16);
}

static inline int32_t mcutl_ssat8(int32_t x)
{
    return x < -128 ? -128 : (x > 127 ? 127 : x);
}

static inline int32_t mcutl_smmulr(int32_t a, int32_t b)
{
    const int64_t v = (int64_t)a * (int64_t)b + (INT64_C(1) << 31);
    /* floor(v / 2^32) without the implementation-defined >> of a negative value */
    return (int32_t)(v >= 0 ? v / (INT64_C(1) << 32)
                            : -((-v + (INT64_C(1) << 32) - 1) / (INT64_C(1) << 32)));
}

static inline int32_t mcutl_smmlar(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)mcutl_smmulr(a, b) + (uint32_t)acc);
}

#endif

/*
 * Fast requantisation, bit-exact with mcutl_requantize() (TFLite's double rounding)
 * when |x * 2^left| < 2^29 and right <= 30 (a kernel checks that once per call, e.g.
 * by mcutl_out_requant_form(); one that cannot prove it for every output uses the
 * portable kernel instead).
 *
 * Why it is exact: SaturatingRoundingDoublingHighMul(a, m) is a * m / 2^31 rounded to
 * nearest with ties upward, i.e. floor((a * m + 2^30) / 2^31) for every a, m except
 * a == m == INT32_MIN (checked: truncation toward zero after the sign-dependent nudge
 * is the same floor). With u = 2a (no overflow for |a| < 2^30) that is
 * floor((u * m + 2^31) / 2^32) = SMMULR(u, m): one instruction.
 * RoundingDivideByPOT(r, e) is r / 2^e rounded to nearest with ties away from zero;
 * the same value for 2r and e + 1, which is floor((2r + 2^e - [r < 0]) / 2^(e + 1)):
 * exact for e = 0 too, and with |a| < 2^29 (so |r| < 2^29), e <= 30 nothing overflows.
 */
typedef struct {
    int32_t multiplier; /* QuantizeMultiplier() mantissa */
    int32_t pre_shift;  /* left + 1: the doubling that makes SMMULR a SRDHM */
    int32_t round;      /* 2^right */
    int32_t post_shift; /* right + 1 */
} mcutl_fast_requant_t;

static inline mcutl_fast_requant_t mcutl_fast_requant_params(int32_t multiplier, int32_t shift)
{
    mcutl_fast_requant_t q;
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    q.multiplier = multiplier;
    q.pre_shift = left + 1;
    q.round = (int32_t)(UINT32_C(1) << right);
    q.post_shift = right + 1;
    return q;
}

static inline int32_t mcutl_fast_requantize(int32_t x, mcutl_fast_requant_t q)
{
    /* x * 2^(left + 1) cannot overflow (|x * 2^left| < 2^29); shifted as unsigned so
     * that a negative x stays defined behaviour in C99. */
    const int32_t r = mcutl_smmulr((int32_t)((uint32_t)x << q.pre_shift), q.multiplier);
    const int32_t t = (int32_t)((uint32_t)r << 1) + q.round - (int32_t)((uint32_t)r >> 31);
    return t < 0 ? ~(~t >> q.post_shift) : (t >> q.post_shift);
}

/*
 * The output stage of the conv and depthwise DSP kernels: the requantisation above with
 * the pre-shift and the output zero point folded away. The kernels accumulate twice the
 * sum, acc2 (doubled inputs or weights, and twice the bias), so SMMULR(acc2 << left, m)
 * is the SRDHM directly. Two forms:
 * - general (any shift): the rounding division as above, t = 2r + 2^right - [r < 0]
 *   shifted right by right + 1, with the output zero point added to the rounding
 *   constant pre-shifted: floor((t + zp * 2^(right + 1)) / 2^(right + 1)) is
 *   floor(t / 2^(right + 1)) + zp exactly. |2r| < 2^30 (as above) and right <= 21 keep
 *   |t| below 2^30 + 2^29 + 2^21 < 2^31 (mcutl_out_requant_form checks right <= 21).
 * - fast, for a layer whose every shift is right by 1 .. 21 (no left shift): the
 *   rounding division by 2^right is floor((r + 2^(right - 1) - [r < 0]) / 2^right); the
 *   constant 2^(right - 1) + zp * 2^right is added by SMMLAR in the multiply itself, and
 *   [r < 0] is [acc2 < 0] (m > 0: they differ only when r == 0 > acc2, where the
 *   quotient is 0 either way): SMMLAR, SUB with a shifted operand, ASR.
 */
typedef struct {
    int32_t multiplier; /* QuantizeMultiplier() mantissa */
    int32_t left;       /* the left shift of the doubled sum (fast: 0) */
    int32_t round;      /* general: 2^right + zp * 2^(right + 1) */
                        /* fast: 2^(right - 1) + zp * 2^right */
    int32_t shift;      /* general: right + 1; fast: right */
} mcutl_out_requant_t;

static inline mcutl_out_requant_t mcutl_out_requant_params(int32_t multiplier, int32_t shift,
                                                           int32_t out_zp, int fast)
{
    mcutl_out_requant_t q;
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    q.multiplier = multiplier;
    q.left = left;
    if (fast) {
        q.round = (int32_t)((UINT32_C(1) << (right - 1)) + ((uint32_t)out_zp << right));
        q.shift = right;
    } else {
        q.round = (int32_t)((UINT32_C(1) << right) + ((uint32_t)out_zp << (right + 1)));
        q.shift = right + 1;
    }
    return q;
}

/* mcutl_requantize(acc2 / 2, ...) + out_zp for a doubled accumulator acc2, the fast form
 * or the general one (constants of the matching mcutl_out_requant_params). */
static inline int32_t mcutl_out_requantize_fast(int32_t acc2, const mcutl_out_requant_t *q)
{
    const int32_t t = mcutl_smmlar(acc2, q->multiplier, q->round) -
                      (int32_t)((uint32_t)acc2 >> 31);
    return t < 0 ? ~(~t >> q->shift) : (t >> q->shift);
}

static inline int32_t mcutl_out_requantize(int32_t acc2, const mcutl_out_requant_t *q)
{
    const int32_t r = mcutl_smmulr((int32_t)((uint32_t)acc2 << q->left), q->multiplier);
    const int32_t t = (int32_t)((uint32_t)r << 1) + q->round - (int32_t)((uint32_t)r >> 31);
    return t < 0 ? ~(~t >> q->shift) : (t >> q->shift);
}

/*
 * Which form of the output stage a layer takes: 0 when mcutl_out_requantize() cannot be
 * proven exact for every output (the kernel runs the portable one), else 2 for the fast
 * form (every shift a right shift and the activation range all of int8), 1 for the
 * general one. Exact: |acc| <= taps * 128 * 255 + |bias[c]| (an int8 weight times an
 * input minus its zero point, summed over the taps, plus the bias), and that bound times
 * 2^left below 2^29, right shift <= 21, for every output channel. One pass over the
 * channels, the bound in 32 bits (taps * 128 * 255 < 2^29 is checked first).
 */
static inline int mcutl_out_requant_form(const int32_t *multiplier, const int32_t *shift,
                                         const int32_t *bias, int32_t channels, int64_t taps,
                                         int32_t act_min, int32_t act_max)
{
    int32_t c, fast = act_min == -128 && act_max == 127;
    uint32_t macs;
    if (taps <= 0 || taps >= (INT64_C(1) << 29) / (128 * 255)) {
        return 0;
    }
    macs = (uint32_t)taps * 128u * 255u; /* < 2^29 */
    for (c = 0; c < channels; ++c) {
        const int32_t s = shift[c], b = bias != 0 ? bias[c] : 0;
        const uint32_t mag = b < 0 ? 0u - (uint32_t)b : (uint32_t)b;
        const int32_t left = s > 0 ? s : 0;
        if (s < -21 || left > 29 || multiplier[c] == INT32_MIN || mag >= (1u << 29) ||
            macs + mag >= (1u << (29 - left))) {
            return 0;
        }
        fast &= s < 0;
    }
    return fast ? 2 : 1;
}

#endif /* MCUTL_INT8_DSP_H */
