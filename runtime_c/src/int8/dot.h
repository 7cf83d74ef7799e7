/*
 * dot.h - the int8 inner product the conv and fully connected kernels share:
 * sum of f[i] * (x[i] - zp) over n int8 pairs, in int32 (exact: no overflow for any
 * layer of int32-sized accumulation, the same integers in any order).
 *
 * On a core with the DSP extension (Cortex-M4/M7: __ARM_FEATURE_DSP) four pairs at a
 * time: two 32-bit loads, SXTB16 to sign-extend the even and the odd bytes into int16
 * halves, SSUB16 to take the zero point off the inputs (|x - zp| <= 255 fits int16),
 * two SMLAD (two multiply-accumulates each). Elsewhere the plain loop. Both give the
 * same int32 bit for bit (integer sums), so host and device stay identical.
 */
#ifndef MCUTL_INT8_DOT_H
#define MCUTL_INT8_DOT_H

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>

static inline int32_t mcutl_dot_s8(const int8_t *f, const int8_t *x, int32_t n, int32_t zp)
{
    const int16x2_t zp2 = (int16x2_t)(((uint32_t)(uint16_t)zp << 16) | (uint16_t)zp);
    int32_t acc = 0;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t fw, xw;
        memcpy(&fw, f + i, sizeof fw); /* an unaligned LDR: allowed on M4/M7 */
        memcpy(&xw, x + i, sizeof xw);
        acc = __smlad(__sxtb16(fw), __ssub16(__sxtb16(xw), zp2), acc);
        acc = __smlad(__sxtb16((fw >> 8) | (fw << 24)),
                      __ssub16(__sxtb16((xw >> 8) | (xw << 24)), zp2), acc);
    }
    for (; i < n; ++i) {
        acc += (int32_t)f[i] * ((int32_t)x[i] - zp);
    }
    return acc;
}
#else
static inline int32_t mcutl_dot_s8(const int8_t *f, const int8_t *x, int32_t n, int32_t zp)
{
    int32_t acc = 0;
    int32_t i;
    for (i = 0; i < n; ++i) {
        acc += (int32_t)f[i] * ((int32_t)x[i] - zp);
    }
    return acc;
}
#endif

#endif /* MCUTL_INT8_DOT_H */
