/*
 * mcutl int8 kernels: PAD of the spatial dimensions of an NHWC tensor with a
 * constant (TFLite PAD pads int8 tensors with the zero point).
 */
#include <string.h>

#include "mcutl/int8.h"

#include "fixedpoint.h"
#include "window.h"

mcutl_status_t mcutl_pad_s8(const mcutl_dims_t *input_dims, const int8_t *input,
                            int32_t pad_top, int32_t pad_bottom, int32_t pad_left,
                            int32_t pad_right, int32_t pad_value, int8_t *output)
{
    int32_t b, y;
    int32_t out_w, row_bytes, left_bytes, right_bytes;

    if (!mcutl_dims_ok(input_dims) || input == 0 || output == 0 || pad_top < 0 ||
        pad_bottom < 0 || pad_left < 0 || pad_right < 0 || !mcutl_zero_point_ok(pad_value)) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    out_w = input_dims->w + pad_left + pad_right;
    row_bytes = input_dims->w * input_dims->c;
    left_bytes = pad_left * input_dims->c;
    right_bytes = pad_right * input_dims->c;
    for (b = 0; b < input_dims->n; ++b) {
        const int32_t top_bytes = pad_top * out_w * input_dims->c;
        const int32_t bottom_bytes = pad_bottom * out_w * input_dims->c;
        memset(output, (int)(int8_t)pad_value, (size_t)top_bytes);
        output += top_bytes;
        for (y = 0; y < input_dims->h; ++y) {
            memset(output, (int)(int8_t)pad_value, (size_t)left_bytes);
            output += left_bytes;
            memcpy(output, input, (size_t)row_bytes);
            output += row_bytes;
            input += row_bytes;
            memset(output, (int)(int8_t)pad_value, (size_t)right_bytes);
            output += right_bytes;
        }
        memset(output, (int)(int8_t)pad_value, (size_t)bottom_bytes);
        output += bottom_bytes;
    }
    return MCUTL_KERNEL_OK;
}
