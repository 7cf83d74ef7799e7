/*
 * f32_resize.h - float32 nearest-neighbour resize to any size, and a plain copy.
 */
#ifndef MCUTL_F32_RESIZE_H
#define MCUTL_F32_RESIZE_H

#include <stdint.h>

#include "mcutl/f32.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @brief Nearest-neighbour resize of an NHWC map to (out_h, out_w):
 *        out[n, y, x, c] = in[n, (y * H) / out_h, (x * W) / out_w, c] (integer division).
 *
 * Matches the PyTorch reference's index gather (mcutl/verify/reference.py); for an
 * integer upscale this is torch's interpolate(mode="nearest").
 *
 * @param[in]  input_dims  [N, H, W, C], all >= 1
 * @param[in]  input       float32 [N, H, W, C]
 * @param[in]  out_h       >= 1
 * @param[in]  out_w       >= 1
 * @param[out] output      float32 [N, out_h, out_w, C]; not in place
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_resize_nearest_f32(const mcutl_f32_dims_t *input_dims,
                                            const float *input, int32_t out_h, int32_t out_w,
                                            float *output);

/**
 * @brief Backward of mcutl_resize_nearest_f32: each input cell receives the sum of the
 *        gradients of the output cells that copied it (in row-major output order).
 *
 * @param[in]     input_dims   [N, H, W, C] of the forward input
 * @param[in]     out_h        forward output height
 * @param[in]     out_w        forward output width
 * @param[in]     grad_output  float32 [N, out_h, out_w, C]
 * @param[in,out] grad_input   float32 [N, H, W, C]
 * @param[in]     accumulate   0: overwrite grad_input; != 0: add to it
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_resize_nearest_grad_input_f32(const mcutl_f32_dims_t *input_dims,
                                                       int32_t out_h, int32_t out_w,
                                                       const float *grad_output,
                                                       float *grad_input, int32_t accumulate);

/**
 * @brief dst[i] = src[i] for i < size (dst and src must not overlap).
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_copy_f32(const float *src, int32_t size, float *dst);

#ifdef __cplusplus
}
#endif

#endif /* MCUTL_F32_RESIZE_H */
