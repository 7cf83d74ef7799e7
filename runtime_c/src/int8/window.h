/*
 * mcutl int8 kernels: internal helpers for sliding-window geometry (not part of
 * the public API).
 */
#ifndef MCUTL_INT8_WINDOW_H
#define MCUTL_INT8_WINDOW_H

#include <stdint.h>

#include "mcutl/int8.h"

/* ceil(a / b) for a >= 0, b >= 1 (and 0 for a <= 0). */
static inline int32_t mcutl_ceil_div_nonneg(int32_t a, int32_t b)
{
    return a <= 0 ? 0 : (a + b - 1) / b;
}

/*
 * For a window whose first tap is at input coordinate `origin` (may be negative)
 * with `taps` taps spaced `dilation` apart over an input of `size`, the range
 * [*first, *last) of tap indices that fall inside the input.
 */
static inline void mcutl_window_taps(int32_t origin, int32_t taps, int32_t dilation,
                                     int32_t size, int32_t *first, int32_t *last)
{
    int32_t lo = origin < 0 ? mcutl_ceil_div_nonneg(-origin, dilation) : 0;
    int32_t hi = mcutl_ceil_div_nonneg(size - origin, dilation);
    if (hi > taps) {
        hi = taps;
    }
    if (lo > hi) {
        lo = hi;
    }
    *first = lo;
    *last = hi;
}

static inline int mcutl_dims_ok(const mcutl_dims_t *d)
{
    return d != 0 && d->n >= 1 && d->h >= 1 && d->w >= 1 && d->c >= 1;
}

#endif /* MCUTL_INT8_WINDOW_H */
