/*
 * mcutl int8 kernels: public API.
 *
 * Portable C99 implementations of the int8 (asymmetric activations, symmetric
 * per-channel weights) operators mcutl emits for a frozen backbone. Every kernel
 * is bit-exact with TFLite's reference kernels (tflite-runtime BUILTIN_REF and
 * TFLite Micro reference kernels) when given the parameters that
 * mcutl/quant/fixedpoint.py computes from the tensors' scales and zero points;
 * tests/test_int8_kernels.py checks this against both interpreters. Where the
 * two runtimes derive a multiplier differently (per-tensor FULLY_CONNECTED,
 * standalone RELU/RELU6), fixedpoint.py computes either runtime's integers
 * (convention="tflite" | "tflm"); the kernels themselves are the same.
 *
 * Conventions shared by all kernels
 * ---------------------------------
 * - Activations are int8 tensors in NHWC order, dense, C-contiguous:
 *   element (n, y, x, c) is at ((n * H + y) * W + x) * C + c.
 * - Zero points are passed as they are stored in the model (NOT negated as in
 *   CMSIS-NN's "offset" convention): input_zero_point, output_zero_point in
 *   [-128, 127].
 * - Requantisation uses TFLite's "double rounding": for an int32 accumulator
 *   acc, out = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(
 *   acc << max(shift, 0), multiplier), max(-shift, 0)), where (multiplier, shift)
 *   is TFLite's QuantizeMultiplier() encoding of a real multiplier
 *   M = multiplier * 2^(shift - 31), multiplier in [2^30, 2^31 - 1] (or 0),
 *   shift > 0 meaning a left shift, -31 <= shift <= 31. Both steps round to
 *   nearest; exact ties go upward in the high multiply (-0.5 -> 0, +0.5 -> 1) and
 *   away from zero in the shift. Arrays of per-channel multipliers/shifts have
 *   one int32 entry per output channel.
 * - act_min/act_max are the fused-activation bounds already in the int8
 *   output domain (-128 <= act_min <= act_max <= 127); use
 *   fixedpoint.activation_range() to compute them.
 * - Accumulators are int32 as in TFLite: a conv/fc is exact as long as
 *   K * 127 * 255 + |bias| < 2^31, i.e. K = KH * KW * C_in/groups <= 66000.
 * - No kernel allocates memory or uses floating point. The portable kernels need no
 *   scratch buffer; a DSP variant that does has a mcutl_*_get_buffer_size() partner
 *   and takes the buffer (planned in the caller's arena) as its last argument.
 * - Unless stated otherwise the output must not overlap any input.
 * - Every function validates its shape arguments (cheaply, once per call) and
 *   returns MCUTL_KERNEL_ARG_ERROR without touching the output if they are
 *   inconsistent, MCUTL_KERNEL_OK otherwise.
 */
#ifndef MCUTL_INT8_H
#define MCUTL_INT8_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Status returned by every kernel. */
typedef enum {
    MCUTL_KERNEL_OK = 0,        /**< success */
    MCUTL_KERNEL_ARG_ERROR = -1 /**< inconsistent shapes or parameters; output untouched */
} mcutl_status_t;

/** Shape of a 4-D tensor, NHWC (filters: see each kernel). All >= 1. */
typedef struct {
    int32_t n; /**< batch (filters: output channels or 1) */
    int32_t h; /**< height */
    int32_t w; /**< width */
    int32_t c; /**< channels (innermost) */
} mcutl_dims_t;

/* ------------------------------------------------------------------------ */
/* CONV_2D                                                                   */
/* ------------------------------------------------------------------------ */

/** Parameters of mcutl_conv2d_s8 (TFLite CONV_2D, int8, per-channel). */
typedef struct {
    int32_t input_zero_point;  /**< [-128, 127] */
    int32_t output_zero_point; /**< [-128, 127] */
    int32_t stride_h;          /**< >= 1 */
    int32_t stride_w;          /**< >= 1 */
    int32_t dilation_h;        /**< >= 1 (1 = dense kernel) */
    int32_t dilation_w;        /**< >= 1 */
    int32_t pad_top;  /**< >= 0: implicit rows of input_zero_point above row 0 */
    int32_t pad_left; /**< >= 0: implicit columns of input_zero_point left of col 0 */
    int32_t groups;   /**< >= 1; C_in == groups * filter C, C_out % groups == 0 */
    int32_t act_min;  /**< fused activation lower bound, int8 domain */
    int32_t act_max;  /**< fused activation upper bound, int8 domain */
    const int32_t *output_multiplier; /**< [C_out], QuantizeMultiplier() mantissas */
    const int32_t *output_shift;      /**< [C_out], QuantizeMultiplier() exponents, [-31, 31] */
} mcutl_conv_params_t;

/**
 * @brief int8 2-D convolution, standard or grouped (TFLite CONV_2D).
 *
 * out[n, y, x, co] = clamp(requant(bias[co] + sum_{ky, kx, ci}
 *     filter[co, ky, kx, ci] * (in[n, y*sh - pt + ky*dh, x*sw - pl + kx*dw,
 *     g*Cg + ci] - input_zero_point), co) + output_zero_point, act_min, act_max)
 * with g = co / (C_out / groups), Cg = filter_dims->c; taps outside the input
 * contribute 0 (i.e. the input is padded with input_zero_point).
 *
 * Padding is explicit: TFLite SAME corresponds to pad_top = total_h / 2 with
 * total_h = max((H_out - 1) * sh + (KH - 1) * dh + 1 - H_in, 0) (extra padding at
 * the bottom/right), VALID to 0. The bottom/right padding is implied by
 * output_dims, which may be any size >= 1.
 *
 * @param[in]  params       quantisation and geometry, see mcutl_conv_params_t
 * @param[in]  input_dims   [N, H_in, W_in, C_in]
 * @param[in]  input        int8 [N, H_in, W_in, C_in]
 * @param[in]  filter_dims  [C_out, KH, KW, C_in / groups] (TFLite OHWI)
 * @param[in]  filter       int8 [C_out, KH, KW, C_in / groups], symmetric (zero point 0)
 * @param[in]  bias         int32 [C_out] with scale in_scale * w_scale[co], or NULL
 *                          (= zeros; tflite-runtime 2.14 requires the tensor,
 *                          TFLite Micro does not)
 * @param[in]  output_dims  [N, H_out, W_out, C_out]
 * @param[out] output       int8 [N, H_out, W_out, C_out]; must not overlap input
 * @return MCUTL_KERNEL_OK, or MCUTL_KERNEL_ARG_ERROR on inconsistent arguments.
 *
 * No scratch buffer. Not in place. Bit-exact with TFLite reference kernels.
 */
mcutl_status_t mcutl_conv2d_s8(const mcutl_conv_params_t *params,
                               const mcutl_dims_t *input_dims, const int8_t *input,
                               const mcutl_dims_t *filter_dims, const int8_t *filter,
                               const int32_t *bias,
                               const mcutl_dims_t *output_dims, int8_t *output);

/**
 * @brief Scratch bytes mcutl_conv2d_s8_dsp needs: two int16 columns of
 *        KH * KW * C_in taps and 28 B per output channel when groups == 1, else 0 (a
 *        grouped convolution runs the portable kernel).
 */
int32_t mcutl_conv2d_s8_dsp_get_buffer_size(const mcutl_conv_params_t *params,
                                            const mcutl_dims_t *filter_dims);

/**
 * @brief mcutl_conv2d_s8 for cores with the DSP extension (Cortex-M4/M7): im2col into
 *        int16 columns and a 2 x 2 (channels x pixels) SMLAD block. The same arguments
 *        and bit for bit the same output as mcutl_conv2d_s8 (which it calls for grouped
 *        convolutions and for layers whose accumulators could exceed its exact fast
 *        requantisation); compiles and gives the same results without the extension.
 *
 * @param[in,out] scratch  mcutl_conv2d_s8_dsp_get_buffer_size() bytes, 4-byte aligned,
 *                         not overlapping the tensors (NULL only if that size is 0)
 */
mcutl_status_t mcutl_conv2d_s8_dsp(const mcutl_conv_params_t *params,
                                   const mcutl_dims_t *input_dims, const int8_t *input,
                                   const mcutl_dims_t *filter_dims, const int8_t *filter,
                                   const int32_t *bias,
                                   const mcutl_dims_t *output_dims, int8_t *output,
                                   void *scratch);

/* ------------------------------------------------------------------------ */
/* DEPTHWISE_CONV_2D                                                         */
/* ------------------------------------------------------------------------ */

/** Parameters of mcutl_depthwise_conv2d_s8 (TFLite DEPTHWISE_CONV_2D, int8). */
typedef struct {
    int32_t input_zero_point;  /**< [-128, 127] */
    int32_t output_zero_point; /**< [-128, 127] */
    int32_t stride_h;          /**< >= 1 */
    int32_t stride_w;          /**< >= 1 */
    int32_t dilation_h;        /**< >= 1 */
    int32_t dilation_w;        /**< >= 1 */
    int32_t pad_top;           /**< >= 0, see mcutl_conv_params_t */
    int32_t pad_left;          /**< >= 0 */
    int32_t depth_multiplier;  /**< >= 1; C_out == C_in * depth_multiplier */
    int32_t act_min;           /**< int8 domain */
    int32_t act_max;           /**< int8 domain */
    const int32_t *output_multiplier; /**< [C_out] */
    const int32_t *output_shift;      /**< [C_out] */
} mcutl_dw_conv_params_t;

/**
 * @brief int8 depthwise 2-D convolution with depth multiplier
 *        (TFLite DEPTHWISE_CONV_2D).
 *
 * Output channel co = ci * depth_multiplier + m reads only input channel ci:
 * out[n, y, x, co] = clamp(requant(bias[co] + sum_{ky, kx} filter[0, ky, kx, co] *
 *     (in[n, y*sh - pt + ky*dh, x*sw - pl + kx*dw, ci] - input_zero_point), co)
 *     + output_zero_point, act_min, act_max); out-of-image taps contribute 0.
 *
 * @param[in]  params       see mcutl_dw_conv_params_t
 * @param[in]  input_dims   [N, H_in, W_in, C_in]
 * @param[in]  input        int8 [N, H_in, W_in, C_in]
 * @param[in]  filter_dims  [1, KH, KW, C_out] (TFLite 1HWC)
 * @param[in]  filter       int8 [1, KH, KW, C_out], symmetric
 * @param[in]  bias         int32 [C_out] or NULL
 * @param[in]  output_dims  [N, H_out, W_out, C_out]
 * @param[out] output       int8 [N, H_out, W_out, C_out]; must not overlap input
 * @return MCUTL_KERNEL_OK, or MCUTL_KERNEL_ARG_ERROR on inconsistent arguments.
 *
 * No scratch buffer. Not in place. Bit-exact with TFLite reference kernels.
 */
mcutl_status_t mcutl_depthwise_conv2d_s8(const mcutl_dw_conv_params_t *params,
                                         const mcutl_dims_t *input_dims, const int8_t *input,
                                         const mcutl_dims_t *filter_dims, const int8_t *filter,
                                         const int32_t *bias,
                                         const mcutl_dims_t *output_dims, int8_t *output);

/**
 * @brief Scratch bytes mcutl_depthwise_conv2d_s8_dsp needs: the weights packed as int16
 *        pairs (4 * C * KH * ceil(KW / 2)), 20 B per channel, KH input rows transposed
 *        to int16 and a row of zeros (2 * (KH * C + 1) * cols, cols = max((W_out - 1) *
 *        stride_w + 2 * ceil(KW / 2), pad_left + W_in) rounded up to even); 0 for layers
 *        it hands to the portable kernel (depth multiplier > 1, dilation_w > 1, KH > 16).
 */
int32_t mcutl_depthwise_conv2d_s8_dsp_get_buffer_size(const mcutl_dw_conv_params_t *params,
                                                      const mcutl_dims_t *input_dims,
                                                      const mcutl_dims_t *filter_dims,
                                                      const mcutl_dims_t *output_dims);

/**
 * @brief mcutl_depthwise_conv2d_s8 for cores with the DSP extension: input rows
 *        transposed per channel so that two horizontal taps are one SMLAD. The same
 *        arguments and bit for bit the same output as mcutl_depthwise_conv2d_s8 (which
 *        it calls for the layers it does not cover, see the buffer size).
 *
 * @param[in,out] scratch  mcutl_depthwise_conv2d_s8_dsp_get_buffer_size() bytes, 4-byte
 *                         aligned, not overlapping the tensors (NULL only if that is 0)
 */
mcutl_status_t mcutl_depthwise_conv2d_s8_dsp(const mcutl_dw_conv_params_t *params,
                                             const mcutl_dims_t *input_dims,
                                             const int8_t *input,
                                             const mcutl_dims_t *filter_dims,
                                             const int8_t *filter, const int32_t *bias,
                                             const mcutl_dims_t *output_dims, int8_t *output,
                                             void *scratch);

/* ------------------------------------------------------------------------ */
/* FULLY_CONNECTED                                                           */
/* ------------------------------------------------------------------------ */

/** Parameters of mcutl_fully_connected_s8 (TFLite FULLY_CONNECTED, int8). */
typedef struct {
    int32_t input_zero_point;  /**< [-128, 127] */
    int32_t output_zero_point; /**< [-128, 127] */
    int32_t act_min;           /**< int8 domain */
    int32_t act_max;           /**< int8 domain */
    const int32_t *output_multiplier; /**< [out_features] (repeat the value for per-tensor) */
    const int32_t *output_shift;      /**< [out_features] */
} mcutl_fc_params_t;

/**
 * @brief int8 fully connected layer (TFLite FULLY_CONNECTED, keep_num_dims=false).
 *
 * out[b, o] = clamp(requant(bias[o] + sum_i filter[o, i] * (in[b, i] -
 *     input_zero_point), o) + output_zero_point, act_min, act_max)
 *
 * @param[in]  params        see mcutl_fc_params_t
 * @param[in]  batches       >= 1 (TFLite: input flat size / in_features)
 * @param[in]  in_features   >= 1
 * @param[in]  input         int8 [batches, in_features]
 * @param[in]  out_features  >= 1
 * @param[in]  filter        int8 [out_features, in_features], symmetric
 * @param[in]  bias          int32 [out_features] or NULL
 * @param[out] output        int8 [batches, out_features]; must not overlap input
 * @return MCUTL_KERNEL_OK, or MCUTL_KERNEL_ARG_ERROR on inconsistent arguments.
 *
 * No scratch buffer. Not in place. Bit-exact with TFLite reference kernels.
 */
mcutl_status_t mcutl_fully_connected_s8(const mcutl_fc_params_t *params, int32_t batches,
                                        int32_t in_features, const int8_t *input,
                                        int32_t out_features, const int8_t *filter,
                                        const int32_t *bias, int8_t *output);

/* ------------------------------------------------------------------------ */
/* ADD                                                                       */
/* ------------------------------------------------------------------------ */

/** Parameters of mcutl_add_s8 (TFLite ADD, int8); fixedpoint.add_params(). */
typedef struct {
    int32_t input1_zero_point; /**< [-128, 127] */
    int32_t input2_zero_point; /**< [-128, 127] */
    int32_t output_zero_point; /**< [-128, 127] */
    int32_t left_shift;        /**< 20 for int8 (TFLite), in [0, 22] */
    int32_t input1_multiplier; /**< s1 / (2 max(s1, s2)) quantised */
    int32_t input1_shift;      /**< <= 0 */
    int32_t input2_multiplier; /**< s2 / (2 max(s1, s2)) quantised */
    int32_t input2_shift;      /**< <= 0 */
    int32_t output_multiplier; /**< 2 max(s1, s2) / (2^left_shift s_out) quantised */
    int32_t output_shift;      /**< <= 0 */
    int32_t act_min;           /**< int8 domain */
    int32_t act_max;           /**< int8 domain */
} mcutl_add_params_t;

/**
 * @brief Element-wise int8 addition with rescaling (TFLite ADD, same shapes).
 *
 * a_i = (in_i - zp_i) << left_shift, scaled by (input_i_multiplier, input_i_shift);
 * out = clamp(requant(a_1 + a_2, output) + output_zero_point, act_min, act_max).
 *
 * @param[in]  params  see mcutl_add_params_t
 * @param[in]  input1  int8 [size] (any layout; both inputs and the output share it)
 * @param[in]  input2  int8 [size]
 * @param[out] output  int8 [size]; MAY alias input1 and/or input2 (in place allowed)
 * @param[in]  size    number of elements, >= 0
 * @return MCUTL_KERNEL_OK, or MCUTL_KERNEL_ARG_ERROR on inconsistent arguments.
 *
 * No scratch buffer. Bit-exact with TFLite reference kernels.
 */
mcutl_status_t mcutl_add_s8(const mcutl_add_params_t *params, const int8_t *input1,
                            const int8_t *input2, int8_t *output, int32_t size);

/**
 * @brief mcutl_add_s8 for cores with the DSP extension: the same arguments and bit for
 *        bit the same output, the requantisations with SMMULR (no 64-bit arithmetic).
 *        No scratch buffer; in place allowed.
 */
mcutl_status_t mcutl_add_s8_dsp(const mcutl_add_params_t *params, const int8_t *input1,
                                const int8_t *input2, int8_t *output, int32_t size);

/* ------------------------------------------------------------------------ */
/* AVERAGE_POOL_2D / MAX_POOL_2D                                             */
/* ------------------------------------------------------------------------ */

/** Parameters of the int8 pooling kernels. */
typedef struct {
    int32_t filter_h; /**< >= 1 */
    int32_t filter_w; /**< >= 1 */
    int32_t stride_h; /**< >= 1 */
    int32_t stride_w; /**< >= 1 */
    int32_t pad_top;  /**< >= 0; padded positions are excluded from the window */
    int32_t pad_left; /**< >= 0 */
    int32_t act_min;  /**< int8 domain */
    int32_t act_max;  /**< int8 domain */
} mcutl_pool_params_t;

/**
 * @brief int8 average pooling (TFLite AVERAGE_POOL_2D).
 *
 * Each output is the rounded mean of the raw int8 values in the window clipped
 * to the input (padding does not count): sum / count with ties away from zero,
 * then clamped to [act_min, act_max]. There is no requantisation: input and
 * output must share scale and zero point (TFLite Micro rejects other models;
 * tflite-runtime silently computes this same quantity, which is then wrong).
 * Geometries where a window lies entirely in the padding (pad_top >= filter_h,
 * pad_left >= filter_w, or a last window starting past the input) are rejected
 * with MCUTL_KERNEL_ARG_ERROR (TFLite's reference kernel fails on them at run time).
 *
 * Global average pooling = filter (H, W), stride 1, no padding, output 1x1
 * (or mcutl_global_avg_pool_s8).
 *
 * @param[in]  params       see mcutl_pool_params_t
 * @param[in]  input_dims   [N, H_in, W_in, C]
 * @param[in]  input        int8 [N, H_in, W_in, C]
 * @param[in]  output_dims  [N, H_out, W_out, C]
 * @param[out] output       int8 [N, H_out, W_out, C]; must not overlap input
 * @return MCUTL_KERNEL_OK, or MCUTL_KERNEL_ARG_ERROR on inconsistent arguments.
 *
 * No scratch buffer. Not in place. Bit-exact with TFLite reference kernels.
 */
mcutl_status_t mcutl_avg_pool_s8(const mcutl_pool_params_t *params,
                                 const mcutl_dims_t *input_dims, const int8_t *input,
                                 const mcutl_dims_t *output_dims, int8_t *output);

/**
 * @brief int8 global average pooling: AVERAGE_POOL_2D with a (H, W) filter,
 *        VALID padding; output [N, 1, 1, C].
 *
 * @param[in]  input_dims  [N, H, W, C]
 * @param[in]  input       int8 [N, H, W, C]
 * @param[in]  act_min     int8 domain
 * @param[in]  act_max     int8 domain
 * @param[out] output      int8 [N, C]; must not overlap input
 * @return MCUTL_KERNEL_OK, or MCUTL_KERNEL_ARG_ERROR on inconsistent arguments.
 *
 * No scratch buffer. Not in place. Bit-exact with TFLite reference kernels.
 */
mcutl_status_t mcutl_global_avg_pool_s8(const mcutl_dims_t *input_dims, const int8_t *input,
                                        int32_t act_min, int32_t act_max, int8_t *output);

/**
 * @brief int8 max pooling (TFLite MAX_POOL_2D).
 *
 * Maximum of the window clipped to the input (padding never wins), clamped to
 * [act_min, act_max]. Input and output share scale and zero point.
 *
 * @param[in]  params       see mcutl_pool_params_t
 * @param[in]  input_dims   [N, H_in, W_in, C]
 * @param[in]  input        int8 [N, H_in, W_in, C]
 * @param[in]  output_dims  [N, H_out, W_out, C]
 * @param[out] output       int8 [N, H_out, W_out, C]; must not overlap input
 * @return MCUTL_KERNEL_OK, or MCUTL_KERNEL_ARG_ERROR (also if a window lies entirely in the
 *         padding).
 *
 * No scratch buffer. Not in place. Bit-exact with TFLite reference kernels.
 */
mcutl_status_t mcutl_max_pool_s8(const mcutl_pool_params_t *params,
                                 const mcutl_dims_t *input_dims, const int8_t *input,
                                 const mcutl_dims_t *output_dims, int8_t *output);

/* ------------------------------------------------------------------------ */
/* RELU / RELU6 / RELU_N1_TO_1 (standalone)                                  */
/* ------------------------------------------------------------------------ */

/** Parameters of mcutl_relu_s8; fixedpoint.relu_params(). */
typedef struct {
    int32_t input_zero_point;  /**< [-128, 127] */
    int32_t output_zero_point; /**< [-128, 127] */
    int32_t output_multiplier; /**< s_in / s_out, QuantizeMultiplier() mantissa */
    int32_t output_shift;      /**< QuantizeMultiplier() exponent (may be > 0) */
    int32_t act_min;           /**< zp_out + round(lo / s_out), clamped to int8 */
    int32_t act_max;           /**< zp_out + round(hi / s_out), clamped to int8 */
} mcutl_relu_params_t;

/**
 * @brief Standalone int8 RELU / RELU6 / RELU_N1_TO_1 (TFLite RELU, RELU6,
 *        RELU_N1_TO_1), which requantise from the input to the output scale:
 *
 * out = clamp(requant(in - input_zero_point) + output_zero_point, act_min, act_max)
 *
 * With equal input and output quantisation the multiplier is exactly 1
 * (2^30, shift 1) and this is a clamp. (TFLite Micro's RELU6 never requantises:
 * fixedpoint.relu_params(..., convention="tflm") gives its clamp parameters.)
 *
 * @param[in]  params  see mcutl_relu_params_t
 * @param[in]  input   int8 [size]
 * @param[out] output  int8 [size]; MAY alias input (in place allowed)
 * @param[in]  size    number of elements, >= 0
 * @return MCUTL_KERNEL_OK, or MCUTL_KERNEL_ARG_ERROR on inconsistent arguments.
 *
 * No scratch buffer. Bit-exact with TFLite reference kernels.
 */
mcutl_status_t mcutl_relu_s8(const mcutl_relu_params_t *params, const int8_t *input,
                             int8_t *output, int32_t size);

/* ------------------------------------------------------------------------ */
/* CONCATENATION / PAD                                                       */
/* ------------------------------------------------------------------------ */

/**
 * @brief int8 concatenation (TFLite CONCATENATION, int8: all inputs must have
 *        the output's scale and zero point, so it is a pure copy).
 *
 * Each input i is viewed as [outer_size, copy_sizes[i]] and the output as
 * [outer_size, sum_i copy_sizes[i]]. Concatenating NHWC tensors along channels:
 * outer_size = N * H * W, copy_sizes[i] = C_i. Along axis a in general:
 * outer_size = prod(dims[:a]), copy_sizes[i] = prod(dims_i[a:]).
 *
 * @param[in]  inputs      num_inputs pointers to int8 tensors
 * @param[in]  copy_sizes  [num_inputs], each >= 0
 * @param[in]  num_inputs  >= 1
 * @param[in]  outer_size  >= 0
 * @param[out] output      int8 [outer_size, sum copy_sizes]; must not overlap inputs
 * @return MCUTL_KERNEL_OK, or MCUTL_KERNEL_ARG_ERROR on inconsistent arguments.
 *
 * No scratch buffer. Not in place. Bit-exact with TFLite reference kernels.
 */
mcutl_status_t mcutl_concatenation_s8(const int8_t *const *inputs, const int32_t *copy_sizes,
                                      int32_t num_inputs, int32_t outer_size, int8_t *output);

/**
 * @brief int8 spatial padding of an NHWC tensor with a constant (TFLite PAD
 *        with paddings [[0, 0], [top, bottom], [left, right], [0, 0]]; TFLite pads
 *        int8 with the output zero point, so pass pad_value = zero point).
 *
 * @param[in]  input_dims  [N, H, W, C]
 * @param[in]  input       int8 [N, H, W, C]
 * @param[in]  pad_top     >= 0
 * @param[in]  pad_bottom  >= 0
 * @param[in]  pad_left    >= 0
 * @param[in]  pad_right   >= 0
 * @param[in]  pad_value   [-128, 127]
 * @param[out] output      int8 [N, H + top + bottom, W + left + right, C]; must not
 *                         overlap input
 * @return MCUTL_KERNEL_OK, or MCUTL_KERNEL_ARG_ERROR on inconsistent arguments.
 *
 * No scratch buffer. Not in place. Bit-exact with TFLite reference kernels.
 */
mcutl_status_t mcutl_pad_s8(const mcutl_dims_t *input_dims, const int8_t *input,
                            int32_t pad_top, int32_t pad_bottom, int32_t pad_left,
                            int32_t pad_right, int32_t pad_value, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* MCUTL_INT8_H */
