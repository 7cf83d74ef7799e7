/*
 * mcutl int8 kernels: CONCATENATION. TFLite's int8 kernel requires every input
 * to share the output's scale and zero point, so this is a strided copy.
 */
#include <string.h>

#include "mcutl/int8.h"

mcutl_status_t mcutl_concatenation_s8(const int8_t *const *inputs, const int32_t *copy_sizes,
                                      int32_t num_inputs, int32_t outer_size, int8_t *output)
{
    int32_t i, k;

    if (inputs == 0 || copy_sizes == 0 || num_inputs < 1 || outer_size < 0) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    for (i = 0; i < num_inputs; ++i) {
        if (copy_sizes[i] < 0 || (copy_sizes[i] > 0 && outer_size > 0 && inputs[i] == 0)) {
            return MCUTL_KERNEL_ARG_ERROR;
        }
    }
    if (outer_size > 0 && output == 0) {
        return MCUTL_KERNEL_ARG_ERROR;
    }
    for (k = 0; k < outer_size; ++k) {
        for (i = 0; i < num_inputs; ++i) {
            const int32_t n = copy_sizes[i];
            if (n > 0) {
                memcpy(output, inputs[i] + k * n, (size_t)n);
                output += n;
            }
        }
    }
    return MCUTL_KERNEL_OK;
}
