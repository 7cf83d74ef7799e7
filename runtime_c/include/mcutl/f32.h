/*
 * mcutl float32 training kernels: public API.
 *
 * Forward and backward passes of the trainable float32 side network (Rep-Net
 * modules, new heads, biases/norms of the baselines), the backward pass through
 * the frozen int8 backbone, the loss and the optimizer updates.
 * tests/test_f32_kernels.py checks every kernel against PyTorch autograd
 * (float64 reference) within 1e-5 relative error, measured norm-wise:
 * ||c - ref||_2 / ||ref||_2 (where a sum cancels, relative to the same sum of
 * absolute values, the scale of float32 rounding).
 *
 * Conventions shared by all kernels
 * ---------------------------------
 * - Activations are float32 tensors in NHWC order, dense, C-contiguous:
 *   element (n, y, x, c) is at ((n * H + y) * W + x) * C + c. Conv weights are
 *   OHWI, [C_out, KH, KW, C_in / groups]; linear weights are [out, in] (PyTorch).
 * - Gradients. Weight/bias/scale gradients ACCUMULATE: grad += d loss / d param,
 *   summed over the call's batch and added once per element to the caller's
 *   buffer, so a mini-batch is a sequence of calls on one buffer (zero it, or
 *   let the optimizer zero it). Input gradients OVERWRITE when accumulate == 0
 *   and are added to the buffer when accumulate != 0 (for a tensor with two
 *   consumers, e.g. a Rep-Net connector feeding both the backbone and a module).
 * - Deterministic: every sum runs in a fixed order, no kernel uses libm (exp,
 *   log and sqrt are mcutl_expf/mcutl_logf/mcutl_log1pf/mcutl_sqrtf below) and
 *   the sources are compiled with -ffp-contract=off (and -fno-math-errno), so a
 *   host build and a Cortex-M4F build give the same bits.
 * - No kernel allocates memory or needs a scratch buffer (so there is no
 *   mcutl_*_get_buffer_size()).
 * - Unless stated otherwise, outputs must not overlap inputs. "In place allowed"
 *   means the output pointer may equal the named input pointer exactly (no
 *   partial overlap).
 * - Every kernel validates its arguments (shapes, required pointers) once per
 *   call and returns MCUTL_F32_ARG_ERROR without writing anything if they are
 *   inconsistent, MCUTL_F32_OK otherwise. Element counts must fit in int32.
 * - 1-bit masks are packed LSB first: element i is bit (i % 8) of byte i / 8;
 *   a mask of `size` elements takes MCUTL_F32_MASK_BYTES(size) bytes and the
 *   unused high bits of its last byte are written as 0. Bit 1 = the gradient
 *   passes.
 *
 * This header is independent of mcutl/int8.h and can be included with it.
 */
#ifndef MCUTL_F32_H
#define MCUTL_F32_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Status returned by the kernels: 0 success, -1 argument error (as the int8 kernels). */
typedef int32_t mcutl_f32_status_t;
#define MCUTL_F32_OK ((mcutl_f32_status_t)0)
#define MCUTL_F32_ARG_ERROR ((mcutl_f32_status_t)-1)
/** The *_finite checks: the step would make a value infinite or NaN. */
#define MCUTL_F32_NONFINITE ((mcutl_f32_status_t)1)

/** Bytes of a 1-bit mask over `size` elements. */
#define MCUTL_F32_MASK_BYTES(size) (((size) + 7) / 8)

/** Shape of a 4-D tensor, NHWC (weights: see each kernel). All >= 1. */
typedef struct {
    int32_t n; /**< batch (conv weights: output channels) */
    int32_t h; /**< height */
    int32_t w; /**< width */
    int32_t c; /**< channels (innermost) */
} mcutl_f32_dims_t;

/* ------------------------------------------------------------------------ */
/* Elementary functions (no libm)                                           */
/* ------------------------------------------------------------------------ */

/**
 * @brief e^x in float32 without libm.
 *
 * Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, a degree-6 minimax polynomial
 * for e^r, exact scaling by 2^n. Max error 0.98 ulp over every float32 input
 * (checked exhaustively against a float64 exp; the tests sample it). Returns
 * +inf for x > 88.7228317 (overflow), 0 below the subnormal range, NaN for NaN.
 */
float mcutl_expf(float x);

/**
 * @brief Natural logarithm in float32 without libm.
 *
 * x = 2^e m, m in [sqrt(2)/2, sqrt(2)), log(m) = f - f^2/2 + s (f^2/2 + R(s^2)) with
 * f = m - 1, s = f / (2 + f). Max error 0.84 ulp over every positive float32.
 * Subnormal inputs are handled. log(0) = -inf, log(x < 0) = NaN, log(+inf) = +inf.
 */
float mcutl_logf(float x);

/**
 * @brief log(1 + x) in float32 without libm, accurate for small |x| (no rounding
 *        of 1 + x for x in [sqrt(2)/2 - 1, sqrt(2) - 1], an exact correction
 *        term outside). Max error 1.24 ulp over every float32 > -1.
 *        log1p(-1) = -inf, log1p(x < -1) = NaN.
 */
float mcutl_log1pf(float x);

/**
 * @brief Correctly rounded square root (IEEE 754), bit-identical on every target.
 *
 * With GCC/Clang and -fno-math-errno on a target with a single-precision
 * hardware square root (x86-64: sqrtss; Arm with an FPU: VSQRT.F32) this is
 * __builtin_sqrtf, a single instruction. Otherwise (or with
 * -DMCUTL_F32_PORTABLE_SQRT) a bitwise integer square root that gives the same
 * correctly rounded result. sqrt(-0) = -0, sqrt(x < 0) = NaN.
 */
float mcutl_sqrtf(float x);

/**
 * @brief cos(x) for |x| <= pi in float32 without libm (learning-rate schedules).
 *
 * Reduced to [0, pi/4] by the symmetries of cos and sin, then Taylor series in
 * float32: a few ulp. |x| > pi gives -1 (the end of a cosine schedule), NaN gives NaN.
 */
float mcutl_cosf_pi(float x);

/* ------------------------------------------------------------------------ */
/* CONV2D (standard, grouped, depthwise)                                    */
/* ------------------------------------------------------------------------ */

/** Geometry of a 2-D convolution (PyTorch Conv2d with explicit padding). */
typedef struct {
    int32_t stride_h;   /**< >= 1 */
    int32_t stride_w;   /**< >= 1 */
    int32_t dilation_h; /**< >= 1 (1 = dense kernel) */
    int32_t dilation_w; /**< >= 1 */
    int32_t pad_top;    /**< >= 0: zero rows above row 0 */
    int32_t pad_left;   /**< >= 0: zero columns left of column 0 */
    int32_t groups;     /**< >= 1; C_in == groups * weight C, C_out % groups == 0 */
} mcutl_f32_conv_params_t;

/**
 * @brief float32 2-D convolution, standard / grouped / depthwise (groups = C_in).
 *
 * out[n, y, x, co] = bias[co] + sum_{ky, kx, ci} weight[co, ky, kx, ci] *
 *     in[n, y*sh - pt + ky*dh, x*sw - pl + kx*dw, g*Cg + ci]
 * with g = co / (C_out / groups), Cg = C_in / groups; taps outside the input are 0.
 * The bottom/right padding is implied by output_dims (any H_out, W_out >= 1):
 * PyTorch's Conv2d(padding=p) is pad_top = p with H_out = (H + 2p - dh(KH-1) - 1)
 * / sh + 1; TF "SAME" puts the odd extra row at the bottom.
 *
 * @param[in]  params       geometry, see mcutl_f32_conv_params_t
 * @param[in]  input_dims   [N, H_in, W_in, C_in]
 * @param[in]  input        float32 [N, H_in, W_in, C_in]
 * @param[in]  weight_dims  [C_out, KH, KW, C_in / groups] (OHWI)
 * @param[in]  weight       float32 OHWI
 * @param[in]  bias         float32 [C_out], or NULL for no bias
 * @param[in]  output_dims  [N, H_out, W_out, C_out]
 * @param[out] output       float32 [N, H_out, W_out, C_out]; not in place
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * No scratch. Matches PyTorch F.conv2d within 1e-5 relative.
 */
mcutl_f32_status_t mcutl_conv2d_f32(const mcutl_f32_conv_params_t *params,
                                    const mcutl_f32_dims_t *input_dims, const float *input,
                                    const mcutl_f32_dims_t *weight_dims, const float *weight,
                                    const float *bias, const mcutl_f32_dims_t *output_dims,
                                    float *output);

/**
 * @brief Gradient of mcutl_conv2d_f32 with respect to its input (a transposed
 *        convolution).
 *
 * grad_in[n, iy, ix, g*Cg + ci] (=|+=) sum over (y, x, ky, kx, co in group g) with
 * y*sh - pt + ky*dh == iy and x*sw - pl + kx*dw == ix of
 * grad_out[n, y, x, co] * weight[co, ky, kx, ci].
 * Input pixels no output window reads get 0 (or are left unchanged when
 * accumulating).
 *
 * @param[in]  params       the forward's geometry
 * @param[in]  output_dims  [N, H_out, W_out, C_out]
 * @param[in]  grad_output  float32 [N, H_out, W_out, C_out]
 * @param[in]  weight_dims  [C_out, KH, KW, C_in / groups]
 * @param[in]  weight       float32 OHWI
 * @param[in]  input_dims   [N, H_in, W_in, C_in]
 * @param[out] grad_input   float32 [N, H_in, W_in, C_in]; not in place
 * @param[in]  accumulate   0: overwrite grad_input; != 0: add to it
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * No scratch. Matches PyTorch autograd (conv_transpose2d) within 1e-5 relative.
 */
mcutl_f32_status_t mcutl_conv2d_grad_input_f32(const mcutl_f32_conv_params_t *params,
                                               const mcutl_f32_dims_t *output_dims,
                                               const float *grad_output,
                                               const mcutl_f32_dims_t *weight_dims,
                                               const float *weight,
                                               const mcutl_f32_dims_t *input_dims,
                                               float *grad_input, int32_t accumulate);

/**
 * @brief Gradient of mcutl_conv2d_f32 with respect to its weight, ACCUMULATED.
 *
 * grad_weight[co, ky, kx, ci] += sum_{n, y, x} grad_out[n, y, x, co] *
 *     in[n, y*sh - pt + ky*dh, x*sw - pl + kx*dw, g*Cg + ci]
 * (the sum over the batch is formed first, then added once).
 *
 * @param[in]     params       the forward's geometry
 * @param[in]     input_dims   [N, H_in, W_in, C_in]
 * @param[in]     input        float32, the forward's input (saved for backward)
 * @param[in]     output_dims  [N, H_out, W_out, C_out]
 * @param[in]     grad_output  float32 [N, H_out, W_out, C_out]
 * @param[in]     weight_dims  [C_out, KH, KW, C_in / groups]
 * @param[in,out] grad_weight  float32 OHWI accumulator
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * No scratch. Matches PyTorch autograd within 1e-5 relative.
 */
mcutl_f32_status_t mcutl_conv2d_grad_weight_f32(const mcutl_f32_conv_params_t *params,
                                                const mcutl_f32_dims_t *input_dims,
                                                const float *input,
                                                const mcutl_f32_dims_t *output_dims,
                                                const float *grad_output,
                                                const mcutl_f32_dims_t *weight_dims,
                                                float *grad_weight);

/**
 * @brief Gradient of a conv (or any NHWC per-channel bias) with respect to its
 *        bias, ACCUMULATED: grad_bias[c] += sum_{n, y, x} grad_out[n, y, x, c].
 *
 * @param[in]     output_dims  [N, H_out, W_out, C_out]
 * @param[in]     grad_output  float32 [N, H_out, W_out, C_out]
 * @param[in,out] grad_bias    float32 [C_out] accumulator
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * Matches PyTorch autograd within 1e-5 relative.
 */
mcutl_f32_status_t mcutl_conv2d_grad_bias_f32(const mcutl_f32_dims_t *output_dims,
                                              const float *grad_output, float *grad_bias);

/* ------------------------------------------------------------------------ */
/* LINEAR                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * @brief float32 fully connected layer: out[b, o] = bias[o] + sum_i in[b, i] w[o, i].
 *
 * @param[in]  batches       >= 1
 * @param[in]  in_features   >= 1
 * @param[in]  input         float32 [batches, in_features]
 * @param[in]  out_features  >= 1
 * @param[in]  weight        float32 [out_features, in_features] (PyTorch layout)
 * @param[in]  bias          float32 [out_features] or NULL
 * @param[out] output        float32 [batches, out_features]; not in place
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * Matches PyTorch F.linear within 1e-5 relative.
 */
mcutl_f32_status_t mcutl_linear_f32(int32_t batches, int32_t in_features, const float *input,
                                    int32_t out_features, const float *weight,
                                    const float *bias, float *output);

/**
 * @brief Input gradient of mcutl_linear_f32:
 *        grad_in[b, i] (=|+=) sum_o grad_out[b, o] w[o, i].
 *
 * @param[in]  batches, in_features, out_features  as in the forward
 * @param[in]  weight       float32 [out_features, in_features]
 * @param[in]  grad_output  float32 [batches, out_features]
 * @param[out] grad_input   float32 [batches, in_features]; not in place
 * @param[in]  accumulate   0: overwrite grad_input; != 0: add to it
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * Matches PyTorch autograd within 1e-5 relative.
 */
mcutl_f32_status_t mcutl_linear_grad_input_f32(int32_t batches, int32_t in_features,
                                               int32_t out_features, const float *weight,
                                               const float *grad_output, float *grad_input,
                                               int32_t accumulate);

/**
 * @brief Weight gradient of mcutl_linear_f32, ACCUMULATED:
 *        grad_w[o, i] += sum_b grad_out[b, o] in[b, i].
 *
 * @param[in]     batches, in_features, out_features  as in the forward
 * @param[in]     input        float32 [batches, in_features] (saved forward input)
 * @param[in]     grad_output  float32 [batches, out_features]
 * @param[in,out] grad_weight  float32 [out_features, in_features] accumulator
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * Matches PyTorch autograd within 1e-5 relative.
 */
mcutl_f32_status_t mcutl_linear_grad_weight_f32(int32_t batches, int32_t in_features,
                                                const float *input, int32_t out_features,
                                                const float *grad_output, float *grad_weight);

/**
 * @brief Bias gradient of mcutl_linear_f32, ACCUMULATED:
 *        grad_b[o] += sum_b grad_out[b, o].
 *
 * @param[in]     batches, out_features  as in the forward
 * @param[in]     grad_output  float32 [batches, out_features]
 * @param[in,out] grad_bias    float32 [out_features] accumulator
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_linear_grad_bias_f32(int32_t batches, int32_t out_features,
                                              const float *grad_output, float *grad_bias);

/* ------------------------------------------------------------------------ */
/* Backward through FROZEN int8 layers (weights in flash, never trained)    */
/* ------------------------------------------------------------------------ */
/*
 * The real-valued weight of an int8 layer is weight_scale[o] * w_q (symmetric,
 * zero point 0). The backward treats the int8 requantisation of the layer's
 * output as the identity (straight-through estimate) and its fused ReLU/ReLU6 by
 * a mask (mcutl_act_mask_from_s8 + mcutl_act_grad_input_f32), so the gradient of
 * a frozen layer needs no saved activation. Bias and input zero point do not
 * enter the input gradient.
 */

/**
 * @brief Input gradient of a frozen int8 CONV_2D (TFLite OHWI weights, any
 *        groups/stride/dilation/padding): mcutl_conv2d_grad_input_f32 with
 *        weight[co, ky, kx, ci] = weight_scale[co] * weight_q[co, ky, kx, ci].
 *
 * @param[in]  params        the layer's geometry (groups as in mcutl_conv_params_t)
 * @param[in]  output_dims   [N, H_out, W_out, C_out]
 * @param[in]  grad_output   float32 [N, H_out, W_out, C_out] (gradient w.r.t. the
 *                           layer's real-valued output)
 * @param[in]  weight_dims   [C_out, KH, KW, C_in / groups]
 * @param[in]  weight        int8 OHWI, symmetric (zero point 0)
 * @param[in]  weight_scale  float32 [C_out] per-output-channel scales (repeat the
 *                           value for a per-tensor scale)
 * @param[in]  input_dims    [N, H_in, W_in, C_in]
 * @param[out] grad_input    float32 [N, H_in, W_in, C_in] (w.r.t. the real-valued
 *                           input); not in place
 * @param[in]  accumulate    0: overwrite grad_input; != 0: add to it
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * No scratch. Matches PyTorch autograd on the dequantised weights within 1e-5
 * relative.
 */
mcutl_f32_status_t mcutl_conv2d_grad_input_s8w_f32(const mcutl_f32_conv_params_t *params,
                                                   const mcutl_f32_dims_t *output_dims,
                                                   const float *grad_output,
                                                   const mcutl_f32_dims_t *weight_dims,
                                                   const int8_t *weight,
                                                   const float *weight_scale,
                                                   const mcutl_f32_dims_t *input_dims,
                                                   float *grad_input, int32_t accumulate);

/**
 * @brief Input gradient of a frozen int8 DEPTHWISE_CONV_2D, reading its TFLite
 *        1HWC weights in place (no OHWI copy in flash).
 *
 * Output channel co = ci * M + m (M = C_out / C_in, the depth multiplier) reads
 * input channel ci with weight weight_scale[co] * weight_q[0, ky, kx, co].
 *
 * @param[in]  params        geometry; params->groups must equal C_in
 * @param[in]  output_dims   [N, H_out, W_out, C_out], C_out = C_in * M
 * @param[in]  grad_output   float32 [N, H_out, W_out, C_out]
 * @param[in]  weight_dims   [1, KH, KW, C_out] (TFLite 1HWC)
 * @param[in]  weight        int8 [1, KH, KW, C_out], symmetric
 * @param[in]  weight_scale  float32 [C_out]
 * @param[in]  input_dims    [N, H_in, W_in, C_in]
 * @param[out] grad_input    float32 [N, H_in, W_in, C_in]; not in place
 * @param[in]  accumulate    0: overwrite grad_input; != 0: add to it
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * No scratch. Matches PyTorch autograd (groups = C_in) on the dequantised
 * weights within 1e-5 relative.
 */
mcutl_f32_status_t mcutl_depthwise_conv2d_grad_input_s8w_f32(
    const mcutl_f32_conv_params_t *params, const mcutl_f32_dims_t *output_dims,
    const float *grad_output, const mcutl_f32_dims_t *weight_dims, const int8_t *weight,
    const float *weight_scale, const mcutl_f32_dims_t *input_dims, float *grad_input,
    int32_t accumulate);

/**
 * @brief Input gradient of a frozen int8 FULLY_CONNECTED:
 *        grad_in[b, i] (=|+=) sum_o grad_out[b, o] weight_scale[o] weight_q[o, i].
 *
 * @param[in]  batches, in_features, out_features  as in the forward
 * @param[in]  weight        int8 [out_features, in_features], symmetric
 * @param[in]  weight_scale  float32 [out_features] (repeat for per-tensor)
 * @param[in]  grad_output   float32 [batches, out_features]
 * @param[out] grad_input    float32 [batches, in_features]; not in place
 * @param[in]  accumulate    0: overwrite grad_input; != 0: add to it
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * Matches PyTorch autograd on the dequantised weights within 1e-5 relative.
 */
mcutl_f32_status_t mcutl_linear_grad_input_s8w_f32(int32_t batches, int32_t in_features,
                                                   int32_t out_features, const int8_t *weight,
                                                   const float *weight_scale,
                                                   const float *grad_output, float *grad_input,
                                                   int32_t accumulate);

/** Mask mode of mcutl_act_mask_from_s8: bit = out > act_min (ReLU). */
#define MCUTL_ACT_MASK_RELU 0
/** Mask mode of mcutl_act_mask_from_s8: bit = act_min < out < act_max (ReLU6 or
 *  any two-sided clamp such as RELU_N1_TO_1). */
#define MCUTL_ACT_MASK_RELU6 1

/**
 * @brief 1-bit backward mask of a frozen int8 layer's fused activation, computed
 *        from its int8 OUTPUT (nothing else is saved).
 *
 * Mode MCUTL_ACT_MASK_RELU: bit i = output[i] > act_min. Mode
 * MCUTL_ACT_MASK_RELU6: bit i = act_min < output[i] < act_max. (act_min/act_max
 * are the layer's clamp bounds in the int8 domain, as given to the int8 kernel.)
 * Matches PyTorch's relu/hardtanh backward, which pass the gradient strictly
 * inside the clamp, evaluated on the quantised output: a pre-activation that
 * rounds onto the bound counts as clamped.
 *
 * @param[in]  output   int8 [size], the frozen layer's output
 * @param[in]  size     >= 0 elements
 * @param[in]  act_min  [-128, 127]
 * @param[in]  act_max  [act_min, 127] (unused in mode RELU)
 * @param[in]  mode     MCUTL_ACT_MASK_RELU or MCUTL_ACT_MASK_RELU6
 * @param[out] mask     uint8 [MCUTL_F32_MASK_BYTES(size)], LSB first
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_act_mask_from_s8(const int8_t *output, int32_t size, int32_t act_min,
                                          int32_t act_max, int32_t mode, uint8_t *mask);

/* ------------------------------------------------------------------------ */
/* ReLU / ReLU6 with 1-bit masks                                            */
/* ------------------------------------------------------------------------ */

/**
 * @brief out = max(x, 0); optionally writes the backward mask bit = (x > 0).
 *
 * @param[in]  input   float32 [size]
 * @param[in]  size    >= 0
 * @param[out] output  float32 [size]; in place allowed (output == input)
 * @param[out] mask    uint8 [MCUTL_F32_MASK_BYTES(size)] or NULL (inference)
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * NaN inputs give 0 and mask bit 0. Matches PyTorch relu and its backward
 * (gradient 0 at x == 0) exactly.
 */
mcutl_f32_status_t mcutl_relu_f32(const float *input, int32_t size, float *output,
                                  uint8_t *mask);

/**
 * @brief out = min(max(x, 0), 6); optionally writes the mask bit = (0 < x < 6).
 *
 * Same arguments as mcutl_relu_f32. Matches PyTorch relu6 (hardtanh(0, 6)) and
 * its backward (gradient 0 at x == 0 and x == 6) exactly.
 */
mcutl_f32_status_t mcutl_relu6_f32(const float *input, int32_t size, float *output,
                                   uint8_t *mask);

/**
 * @brief out = min(max(x, lo), hi): the float value a requantisation to int8 keeps
 *        (lo, hi: the real values of -128 and 127), its derivative being the mask of
 *        the int8 values strictly inside (-128, 127).
 *
 * @param[in]  input   float32 [size]
 * @param[in]  size    >= 0
 * @param[in]  lo      lower bound, <= hi
 * @param[in]  hi      upper bound
 * @param[out] output  float32 [size]; in place allowed (output == input)
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR. NaN stays NaN (as torch.clamp).
 */
mcutl_f32_status_t mcutl_clamp_f32(const float *input, int32_t size, float lo, float hi,
                                   float *output);

/**
 * @brief Backward of any masked activation (ReLU, ReLU6, frozen int8 layers):
 *        grad_in[i] (=|+=) (mask bit i) ? grad_out[i] : 0.
 *
 * @param[in]  grad_output  float32 [size]
 * @param[in]  mask         uint8 [MCUTL_F32_MASK_BYTES(size)], LSB first
 * @param[in]  size         >= 0
 * @param[out] grad_input   float32 [size]; in place allowed (grad_input ==
 *                          grad_output) when accumulate == 0
 * @param[in]  accumulate   0: overwrite; != 0: add (masked elements unchanged)
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_act_grad_input_f32(const float *grad_output, const uint8_t *mask,
                                            int32_t size, float *grad_input,
                                            int32_t accumulate);

/* ------------------------------------------------------------------------ */
/* Normalisation                                                            */
/* ------------------------------------------------------------------------ */

/**
 * @brief Group normalisation per sample (PyTorch GroupNorm on NHWC data).
 *
 * For each sample n and group g (channels g*C/G .. (g+1)*C/G - 1, over all H, W):
 * mean = sum(x) / cnt, var = sum((x - mean)^2) / cnt (biased, two passes),
 * rstd = 1 / sqrt(var + eps), xhat = (x - mean) * rstd,
 * out = xhat * gamma[c] + beta[c].
 *
 * Groups should hold >= 4 elements: with 2 the exact input gradient is O(eps)
 * (it is orthogonal to 1 and xhat) and drowns in float32 rounding, as in PyTorch.
 *
 * For backward the caller saves xhat (same size as the input) and rstd; this
 * is cheaper than saving the input: the backward then needs neither the mean
 * nor a recompute, and xhat may be written over the input in place. The output
 * cannot replace xhat: gamma may be 0 (Rep-Net initialises the last norm's
 * scale to 0).
 *
 * @param[in]  dims    [N, H, W, C]
 * @param[in]  input   float32 [N, H, W, C]
 * @param[in]  groups  >= 1, C % groups == 0
 * @param[in]  eps     > 0 (PyTorch default 1e-5)
 * @param[in]  gamma   float32 [C], or NULL for 1
 * @param[in]  beta    float32 [C], or NULL for 0
 * @param[out] output  float32 [N, H, W, C]; in place allowed (output == input)
 * @param[out] xhat    float32 [N, H, W, C] or NULL; may equal input (not output)
 * @param[out] mean    float32 [N, groups] or NULL
 * @param[out] rstd    float32 [N, groups] or NULL
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * Matches PyTorch F.group_norm within 1e-5 relative.
 */
mcutl_f32_status_t mcutl_group_norm_f32(const mcutl_f32_dims_t *dims, const float *input,
                                        int32_t groups, float eps, const float *gamma,
                                        const float *beta, float *output, float *xhat,
                                        float *mean, float *rstd);

/**
 * @brief Backward of mcutl_group_norm_f32.
 *
 * With dxh = grad_out * gamma[c], per (n, g):
 * grad_in = rstd * (dxh - mean(dxh) - xhat * mean(dxh * xhat));
 * grad_gamma[c] += sum_{n,y,x} grad_out * xhat; grad_beta[c] += sum grad_out.
 *
 * @param[in]     dims         [N, H, W, C]
 * @param[in]     groups       as in the forward
 * @param[in]     xhat         float32 [N, H, W, C] saved by the forward
 * @param[in]     rstd         float32 [N, groups] saved by the forward
 * @param[in]     gamma        float32 [C] or NULL for 1
 * @param[in]     grad_output  float32 [N, H, W, C]
 * @param[out]    grad_input   float32 [N, H, W, C] or NULL; with accumulate == 0 it
 *                             may equal grad_output or xhat (in place)
 * @param[in]     accumulate   0: overwrite grad_input; != 0: add to it
 * @param[in,out] grad_gamma   float32 [C] accumulator, or NULL (gamma frozen)
 * @param[in,out] grad_beta    float32 [C] accumulator, or NULL (beta frozen)
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * No scratch. Matches PyTorch autograd within 1e-5 relative.
 */
mcutl_f32_status_t mcutl_group_norm_grad_f32(const mcutl_f32_dims_t *dims, int32_t groups,
                                             const float *xhat, const float *rstd,
                                             const float *gamma, const float *grad_output,
                                             float *grad_input, int32_t accumulate,
                                             float *grad_gamma, float *grad_beta);

/**
 * @brief Per-channel scale and shift: out[..., c] = in[..., c] * scale[c] + shift[c].
 *
 * @param[in]  dims    [N, H, W, C]
 * @param[in]  input   float32 [N, H, W, C]
 * @param[in]  scale   float32 [C]
 * @param[in]  shift   float32 [C], or NULL for 0
 * @param[out] output  float32 [N, H, W, C]; in place allowed (output == input)
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * Matches PyTorch (x * scale + shift) within 1e-5 relative.
 */
mcutl_f32_status_t mcutl_scale_shift_f32(const mcutl_f32_dims_t *dims, const float *input,
                                         const float *scale, const float *shift,
                                         float *output);

/**
 * @brief Backward of mcutl_scale_shift_f32.
 *
 * grad_in (=|+=) grad_out * scale[c]; grad_scale[c] += sum grad_out * in;
 * grad_shift[c] += sum grad_out (sums over N, H, W).
 *
 * @param[in]     dims         [N, H, W, C]
 * @param[in]     input        float32 [N, H, W, C], the forward's input; needed only
 *                             when grad_scale != NULL (else may be NULL)
 * @param[in]     scale        float32 [C]; needed only when grad_input != NULL
 * @param[in]     grad_output  float32 [N, H, W, C]
 * @param[out]    grad_input   float32 [N, H, W, C] or NULL; may equal grad_output
 *                             when accumulate == 0
 * @param[in]     accumulate   0: overwrite grad_input; != 0: add to it
 * @param[in,out] grad_scale   float32 [C] accumulator, or NULL
 * @param[in,out] grad_shift   float32 [C] accumulator, or NULL
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * Matches PyTorch autograd within 1e-5 relative.
 */
mcutl_f32_status_t mcutl_scale_shift_grad_f32(const mcutl_f32_dims_t *dims, const float *input,
                                              const float *scale, const float *grad_output,
                                              float *grad_input, int32_t accumulate,
                                              float *grad_scale, float *grad_shift);

/* ------------------------------------------------------------------------ */
/* Pooling and resizing                                                     */
/* ------------------------------------------------------------------------ */

/**
 * @brief Average pooling, kernel (pool_h, pool_w) = stride, no padding
 *        (PyTorch AvgPool2d(k), floor mode: trailing rows/columns are dropped).
 *
 * out[n, y, x, c] = sum_{i < ph, j < pw} in[n, y*ph + i, x*pw + j, c] / (ph * pw).
 *
 * @param[in]  input_dims  [N, H, W, C], H >= pool_h, W >= pool_w
 * @param[in]  input       float32 [N, H, W, C]
 * @param[in]  pool_h      >= 1
 * @param[in]  pool_w      >= 1
 * @param[out] output      float32 [N, H / pool_h, W / pool_w, C]; not in place
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * Matches PyTorch avg_pool2d within 1e-5 relative.
 */
mcutl_f32_status_t mcutl_avg_pool_f32(const mcutl_f32_dims_t *input_dims, const float *input,
                                      int32_t pool_h, int32_t pool_w, float *output);

/**
 * @brief Backward of mcutl_avg_pool_f32: grad_in[n, iy, ix, c] (=|+=)
 *        grad_out[n, iy / ph, ix / pw, c] / (ph * pw); dropped rows/columns get 0.
 *
 * @param[in]  input_dims   [N, H, W, C] of the forward's input
 * @param[in]  pool_h, pool_w  as in the forward
 * @param[in]  grad_output  float32 [N, H / pool_h, W / pool_w, C]
 * @param[out] grad_input   float32 [N, H, W, C]; not in place
 * @param[in]  accumulate   0: overwrite grad_input; != 0: add to it
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_avg_pool_grad_input_f32(const mcutl_f32_dims_t *input_dims,
                                                 int32_t pool_h, int32_t pool_w,
                                                 const float *grad_output, float *grad_input,
                                                 int32_t accumulate);

/**
 * @brief Global average pooling: out[n, c] = sum_{y, x} in[n, y, x, c] / (H * W).
 *
 * @param[in]  input_dims  [N, H, W, C]
 * @param[in]  input       float32 [N, H, W, C]
 * @param[out] output      float32 [N, C]; not in place
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_global_avg_pool_f32(const mcutl_f32_dims_t *input_dims,
                                             const float *input, float *output);

/**
 * @brief Backward of mcutl_global_avg_pool_f32:
 *        grad_in[n, y, x, c] (=|+=) grad_out[n, c] / (H * W).
 *
 * @param[in]  input_dims   [N, H, W, C]
 * @param[in]  grad_output  float32 [N, C]
 * @param[out] grad_input   float32 [N, H, W, C]; not in place
 * @param[in]  accumulate   0: overwrite grad_input; != 0: add to it
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_global_avg_pool_grad_input_f32(const mcutl_f32_dims_t *input_dims,
                                                        const float *grad_output,
                                                        float *grad_input, int32_t accumulate);

/**
 * @brief Nearest-neighbour upsampling by integer factors (PyTorch
 *        interpolate(scale_factor=(fh, fw), mode="nearest")):
 *        out[n, y, x, c] = in[n, y / fh, x / fw, c].
 *
 * @param[in]  input_dims  [N, H, W, C]
 * @param[in]  input       float32 [N, H, W, C]
 * @param[in]  factor_h    >= 1
 * @param[in]  factor_w    >= 1
 * @param[out] output      float32 [N, H * fh, W * fw, C]; not in place
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_upsample_nearest_f32(const mcutl_f32_dims_t *input_dims,
                                              const float *input, int32_t factor_h,
                                              int32_t factor_w, float *output);

/**
 * @brief Backward of mcutl_upsample_nearest_f32: each input pixel gets the sum of
 *        the gradients of its fh * fw copies (summed row by row, in order).
 *
 * @param[in]  input_dims   [N, H, W, C] of the forward's input
 * @param[in]  factor_h, factor_w  as in the forward
 * @param[in]  grad_output  float32 [N, H * fh, W * fw, C]
 * @param[out] grad_input   float32 [N, H, W, C]; not in place
 * @param[in]  accumulate   0: overwrite grad_input; != 0: add to it
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_upsample_nearest_grad_input_f32(const mcutl_f32_dims_t *input_dims,
                                                         int32_t factor_h, int32_t factor_w,
                                                         const float *grad_output,
                                                         float *grad_input,
                                                         int32_t accumulate);

/* ------------------------------------------------------------------------ */
/* Element-wise                                                             */
/* ------------------------------------------------------------------------ */

/**
 * @brief out[i] = a[i] + b[i] (the Rep-Net connector; its backward passes the
 *        gradient unchanged to both inputs).
 *
 * @param[in]  a, b    float32 [size]
 * @param[in]  size    >= 0
 * @param[out] output  float32 [size]; in place allowed (output == a or b)
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_add_f32(const float *a, const float *b, int32_t size, float *output);

/**
 * @brief y[i] += alpha * x[i] (gradients that meet; alpha = 1 adds exactly).
 *
 * @param[in]     size   >= 0
 * @param[in]     alpha  scale
 * @param[in]     x      float32 [size]
 * @param[in,out] y      float32 [size]; y == x allowed (y = (1 + alpha) y)
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_axpy_f32(int32_t size, float alpha, const float *x, float *y);

/* ------------------------------------------------------------------------ */
/* Loss                                                                     */
/* ------------------------------------------------------------------------ */

/**
 * @brief Softmax cross-entropy with integer labels and optional label smoothing
 *        (PyTorch F.cross_entropy(logits, labels, label_smoothing=eps)).
 *
 * Per row b, with p = softmax(logits[b]) (computed after subtracting the row
 * maximum, using mcutl_expf/mcutl_logf) and the target t_j = (1 - eps) [j ==
 * label] + eps / K: loss_b = -sum_j t_j log p_j, grad_logits[b, j] =
 * grad_scale * (p_j - t_j).
 *
 * @param[in]  logits           float32 [batches, classes]
 * @param[in]  labels           int32 [batches], each in [0, classes)
 * @param[in]  batches          >= 1
 * @param[in]  classes          >= 1 (K)
 * @param[in]  label_smoothing  eps in [0, 1]
 * @param[in]  grad_scale       factor of grad_logits: 1 / batches gives the gradient
 *                              of the returned mean; 1 / (batches * accumulation
 *                              steps) averages a mini-batch built by accumulation
 * @param[out] probs            float32 [batches, classes] softmax, or NULL; may equal
 *                              logits
 * @param[out] grad_logits      float32 [batches, classes], or NULL; may equal logits
 *                              (must not equal probs)
 * @return the mean loss over the rows (>= 0), or -1.0f on invalid arguments
 *         (nothing written).
 *
 * Matches PyTorch F.cross_entropy and its autograd within 1e-5 relative.
 */
float mcutl_softmax_xent_f32(const float *logits, const int32_t *labels, int32_t batches,
                             int32_t classes, float label_smoothing, float grad_scale,
                             float *probs, float *grad_logits);

/* ------------------------------------------------------------------------ */
/* Optimizers (in place, PyTorch conventions)                               */
/* ------------------------------------------------------------------------ */

/** Hyper-parameters of SGD (torch.optim.SGD, dampening 0, nesterov off). */
typedef struct {
    float lr;           /**< learning rate, > 0 */
    float momentum;     /**< mu in [0, 1); 0: plain SGD, no buffer */
    float weight_decay; /**< L2 coefficient added to the gradient, >= 0 */
} mcutl_f32_sgd_params_t;

/**
 * @brief One SGD step, in place (torch.optim.SGD):
 *        g = grad + wd * w; v = mu * v + g; w -= lr * v  (w -= lr * g if mu == 0).
 *
 * PyTorch initialises its buffer to g at the first step; a zero-initialised v
 * gives the same bits (mu * 0 + g == g).
 *
 * @param[in]     params        see mcutl_f32_sgd_params_t
 * @param[in]     size          >= 0 parameters
 * @param[in,out] weight        float32 [size]
 * @param[in,out] grad          float32 [size]; zeroed after the step if zero_grad
 * @param[in,out] momentum_buf  float32 [size] (zero before the first step), or NULL
 *                              when momentum == 0
 * @param[in]     zero_grad     != 0: set grad to 0 for the next accumulation
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * Matches torch.optim.SGD within 1e-5 relative over many steps.
 */
mcutl_f32_status_t mcutl_sgd_step_f32(const mcutl_f32_sgd_params_t *params, int32_t size,
                                      float *weight, float *grad, float *momentum_buf,
                                      int32_t zero_grad);

/**
 * @brief Would mcutl_sgd_step_f32 with these arguments keep every weight and momentum
 *        value finite? The same arithmetic, nothing written (a guard before the step).
 * @return MCUTL_F32_OK (finite), MCUTL_F32_NONFINITE, or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_sgd_step_finite_f32(const mcutl_f32_sgd_params_t *params, int32_t size,
                                             const float *weight, const float *grad,
                                             const float *momentum_buf);

/**
 * @brief SGD with momentum without a gradient buffer, step 1 of 2: v *= mu.
 *
 * Call before the first backward of a mini-batch; the backward kernels then
 * accumulate the weight gradients directly into v (v = mu v + sum of the
 * gradients), and mcutl_sgd_accum_step_f32 finishes the update. Same result as
 * mcutl_sgd_step_f32 up to summation order, 4 bytes per parameter less.
 *
 * @param[in]     params        momentum used (lr, weight_decay unused)
 * @param[in]     size          >= 0
 * @param[in,out] momentum_buf  float32 [size]
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_sgd_accum_begin_f32(const mcutl_f32_sgd_params_t *params,
                                             int32_t size, float *momentum_buf);

/**
 * @brief SGD with momentum without a gradient buffer, step 2 of 2:
 *        v += wd * w; w -= lr * v.
 *
 * @param[in]     params        lr and weight_decay used
 * @param[in]     size          >= 0
 * @param[in,out] weight        float32 [size]
 * @param[in,out] momentum_buf  float32 [size], holding mu v + sum of the gradients
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_sgd_accum_step_f32(const mcutl_f32_sgd_params_t *params,
                                            int32_t size, float *weight, float *momentum_buf);

/** Hyper-parameters of Adam (torch.optim.Adam, amsgrad off). */
typedef struct {
    float lr;           /**< learning rate, > 0 */
    float beta1;        /**< [0, 1), e.g. 0.9 */
    float beta2;        /**< [0, 1), e.g. 0.999 */
    float eps;          /**< > 0, added outside the square root, e.g. 1e-8 */
    float weight_decay; /**< L2 coefficient added to the gradient (not AdamW), >= 0 */
} mcutl_f32_adam_params_t;

/**
 * @brief One Adam step, in place (torch.optim.Adam):
 *        g = grad + wd * w; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 *        w -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
 *
 * 1 - beta^t is formed without cancellation (binary powering of the complement),
 * accurate to a few ulp for any t. The betas are float32: PyTorch given the
 * doubles 0.9/0.999 computes 1 - 0.999^t from a slightly different beta2 (about
 * 1e-5 relative apart at t = 1); give it the float32-rounded betas to compare.
 *
 * @param[in]     params      see mcutl_f32_adam_params_t
 * @param[in]     step        t >= 1, the step number after incrementing (PyTorch's
 *                            state["step"])
 * @param[in]     size        >= 0 parameters
 * @param[in,out] weight      float32 [size]
 * @param[in,out] grad        float32 [size]; zeroed after the step if zero_grad
 * @param[in,out] exp_avg     float32 [size] m (zero before step 1)
 * @param[in,out] exp_avg_sq  float32 [size] v (zero before step 1)
 * @param[in]     zero_grad   != 0: set grad to 0 for the next accumulation
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 *
 * Matches torch.optim.Adam within 1e-5 relative over many steps.
 */
mcutl_f32_status_t mcutl_adam_step_f32(const mcutl_f32_adam_params_t *params, int32_t step,
                                       int32_t size, float *weight, float *grad,
                                       float *exp_avg, float *exp_avg_sq, int32_t zero_grad);

/**
 * @brief Would mcutl_adam_step_f32 with these arguments keep every weight and moment
 *        finite? The same arithmetic, nothing written (a guard before the step).
 * @return MCUTL_F32_OK (finite), MCUTL_F32_NONFINITE, or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_adam_step_finite_f32(const mcutl_f32_adam_params_t *params,
                                              int32_t step, int32_t size, const float *weight,
                                              const float *grad, const float *exp_avg,
                                              const float *exp_avg_sq);

/* ------------------------------------------------------------------------ */
/* Quantisation                                                             */
/* ------------------------------------------------------------------------ */

/**
 * @brief out[i] = scale * (in[i] - zero_point) (TFLite DEQUANTIZE).
 *
 * The float32 product is correctly rounded, so the result equals TFLite's (which
 * forms it in double and rounds once) bit for bit.
 *
 * @param[in]  input       int8 [size]
 * @param[in]  size        >= 0
 * @param[in]  scale       > 0
 * @param[in]  zero_point  [-128, 127]
 * @param[out] output      float32 [size]
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_dequantize_s8_f32(const int8_t *input, int32_t size, float scale,
                                           int32_t zero_point, float *output);

/**
 * @brief A trained float bias back into an int8 kernel's int32 bias:
 *        out[i] = round_half_away(in[i] / scale[i]) (float32 division), saturated to
 *        int32; a NaN or a scale that is not > 0 gives 0.
 *
 * @param[in]  input   float32 [size], the bias in real units
 * @param[in]  size    >= 0
 * @param[in]  scale   float32 [size], the bias scale (input scale x weight scale)
 * @param[out] output  int32 [size]
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_quantize_bias_f32_s32(const float *input, int32_t size,
                                               const float *scale, int32_t *output);

/**
 * @brief Dequantise while average-pooling (kernel = stride, no padding, floor):
 *        out[n, oy, ox, c] = sum over the window of scale * (in - zero_point), / (kh * kw).
 *
 * Bit for bit mcutl_dequantize_s8_f32 followed by mcutl_avg_pool_f32 (the same products
 * summed in the same order), without the float copy of the whole input: a side network
 * that reads the input pooled needs only the pooled map.
 *
 * @param[in]  input_dims  [N, H, W, C] of the int8 input
 * @param[in]  input       int8 [N, H, W, C]
 * @param[in]  pool_h, pool_w  window = stride, 1 <= pool <= H, W
 * @param[in]  scale       > 0
 * @param[in]  zero_point  [-128, 127]
 * @param[out] output      float32 [N, H / pool_h, W / pool_w, C]
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_dequantize_avg_pool_s8_f32(const mcutl_f32_dims_t *input_dims,
                                                    const int8_t *input, int32_t pool_h,
                                                    int32_t pool_w, float scale,
                                                    int32_t zero_point, float *output);

/**
 * @brief out[i] = clamp(round(in[i] / scale) + zero_point, -128, 127)
 *        (TFLite QUANTIZE float32 -> int8).
 *
 * The quotient is a float32 division and round() is ties away from zero (as
 * TFLite's TfLiteRound/std::round), so the result equals TFLite's reference
 * kernel bit for bit. Values beyond the int8 range (and +-inf) saturate; NaN
 * gives zero_point (undefined behaviour in TFLite).
 *
 * @param[in]  input       float32 [size]
 * @param[in]  size        >= 0
 * @param[in]  scale       > 0
 * @param[in]  zero_point  [-128, 127]
 * @param[out] output      int8 [size]
 * @return MCUTL_F32_OK or MCUTL_F32_ARG_ERROR.
 */
mcutl_f32_status_t mcutl_quantize_f32_s8(const float *input, int32_t size, float scale,
                                         int32_t zero_point, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* MCUTL_F32_H */
