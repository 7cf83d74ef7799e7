/*
 * mcutl int8 kernels: argument checks shared by a kernel and its variants (the
 * portable conv2d.c and conv2d_dsp.c accept exactly the same arguments). Internal.
 */
#ifndef MCUTL_INT8_ARGS_H
#define MCUTL_INT8_ARGS_H

#include "mcutl/int8.h"

#include "fixedpoint.h"
#include "window.h"

static inline int mcutl_conv_args_ok(const mcutl_conv_params_t *p, const mcutl_dims_t *in_d,
                                     const int8_t *in, const mcutl_dims_t *f_d, const int8_t *f,
                                     const mcutl_dims_t *out_d, const int8_t *out)
{
    if (p == 0 || in == 0 || f == 0 || out == 0) {
        return 0;
    }
    if (!mcutl_dims_ok(in_d) || !mcutl_dims_ok(f_d) || !mcutl_dims_ok(out_d)) {
        return 0;
    }
    if (p->output_multiplier == 0 || p->output_shift == 0) {
        return 0;
    }
    if (p->stride_h < 1 || p->stride_w < 1 || p->dilation_h < 1 || p->dilation_w < 1) {
        return 0;
    }
    if (p->pad_top < 0 || p->pad_left < 0 || p->groups < 1) {
        return 0;
    }
    if (in_d->c != p->groups * f_d->c || out_d->c != f_d->n || out_d->c % p->groups != 0) {
        return 0;
    }
    if (out_d->n != in_d->n) {
        return 0;
    }
    if (!mcutl_zero_point_ok(p->input_zero_point) || !mcutl_zero_point_ok(p->output_zero_point)) {
        return 0;
    }
    if (!mcutl_act_range_ok(p->act_min, p->act_max)) {
        return 0;
    }
    return mcutl_shifts_ok(p->output_shift, out_d->c);
}

static inline int mcutl_dw_args_ok(const mcutl_dw_conv_params_t *p, const mcutl_dims_t *in_d,
                                   const int8_t *in, const mcutl_dims_t *f_d, const int8_t *f,
                                   const mcutl_dims_t *out_d, const int8_t *out)
{
    if (p == 0 || in == 0 || f == 0 || out == 0) {
        return 0;
    }
    if (!mcutl_dims_ok(in_d) || !mcutl_dims_ok(f_d) || !mcutl_dims_ok(out_d)) {
        return 0;
    }
    if (p->output_multiplier == 0 || p->output_shift == 0) {
        return 0;
    }
    if (p->stride_h < 1 || p->stride_w < 1 || p->dilation_h < 1 || p->dilation_w < 1) {
        return 0;
    }
    if (p->pad_top < 0 || p->pad_left < 0 || p->depth_multiplier < 1) {
        return 0;
    }
    if (f_d->n != 1 || f_d->c != out_d->c || out_d->c != in_d->c * p->depth_multiplier) {
        return 0;
    }
    if (out_d->n != in_d->n) {
        return 0;
    }
    if (!mcutl_zero_point_ok(p->input_zero_point) || !mcutl_zero_point_ok(p->output_zero_point)) {
        return 0;
    }
    if (!mcutl_act_range_ok(p->act_min, p->act_max)) {
        return 0;
    }
    return mcutl_shifts_ok(p->output_shift, out_d->c);
}

#endif /* MCUTL_INT8_ARGS_H */
