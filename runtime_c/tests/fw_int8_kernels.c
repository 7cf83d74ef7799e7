/*
 * fw_int8_kernels.c - test firmware: runs int8 kernels (convolutions, add), both kernel sets, on
 * cases read from the host through semihosting (QEMU), and writes their outputs back
 * (tests/test_int8_dsp_qemu.py packs the cases and checks the outputs bit for bit).
 *
 * "kernel_cases.bin" (in QEMU's working directory), little-endian int32 words:
 *   u32 count, then per case:
 *   op (1 = CONV_2D, 2 = DEPTHWISE_CONV_2D), kernels (0 = portable, 1 = dsp),
 *   in_zp, out_zp, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left,
 *   groups_or_depth_multiplier, act_min, act_max, has_bias,
 *   input dims (n h w c), filter dims (n h w c), output dims (n h w c),
 *   multipliers[C_out], shifts[C_out], bias[C_out] (if has_bias),
 *   then the int8 input and filter, each padded to a multiple of 4 bytes;
 *   or op 3 (ADD), kernels, the 12 fields of mcutl_add_params_t in order, size, then the
 *   two int8 inputs, each padded to a multiple of 4 bytes.
 * "kernel_out.bin": per case the int32 status and the int8 output (padded to 4).
 * The scratch of a DSP kernel is filled with a pattern first: a kernel that read it
 * before writing it would change its output from one case to the next.
 */
#include <stdint.h>
#include <string.h>

#include "mcutl/board.h"
#include "mcutl/int8.h"
#include "semihost.h"

#define SH_SYS_OPEN 0x01u
#define SH_SYS_WRITE 0x05u
#define SH_SYS_READ 0x06u
#define SH_SYS_FLEN 0x0Cu
#define SH_MODE_RB 1u
#define SH_MODE_WB 5u

#define IN_BYTES (1u << 20)
#define OUT_BYTES (1u << 19)
#define SCRATCH_BYTES (1u << 16)

static uint32_t in_buf[IN_BYTES / 4u];
static uint32_t out_buf[OUT_BYTES / 4u];
static uint32_t scratch[SCRATCH_BYTES / 4u];

static int32_t sh_open(const char *name, uint32_t mode)
{
    uint32_t args[3];
    args[0] = (uint32_t)(uintptr_t)name;
    args[1] = mode;
    args[2] = (uint32_t)strlen(name);
    return (int32_t)mcutl_semihost_call(SH_SYS_OPEN, args);
}

static void fail(const char *why)
{
    mcutl_board_log(why);
    mcutl_board_exit(2);
}

static void dims_at(const int32_t *w, mcutl_dims_t *d)
{
    d->n = w[0];
    d->h = w[1];
    d->w = w[2];
    d->c = w[3];
}

static int32_t volume(const mcutl_dims_t *d)
{
    return d->n * d->h * d->w * d->c;
}

static int32_t words(int32_t bytes)
{
    return (bytes + 3) / 4;
}

int main(void)
{
    uint32_t args[3];
    int32_t h, len, count, i;
    const int32_t *w = (const int32_t *)in_buf;
    uint32_t out_words = 0;

    mcutl_board_init();
    h = sh_open("kernel_cases.bin", SH_MODE_RB);
    if (h < 0) {
        fail("fw_int8_kernels: cannot open kernel_cases.bin\n");
    }
    args[0] = (uint32_t)h;
    len = (int32_t)mcutl_semihost_call(SH_SYS_FLEN, args);
    if (len <= 0 || (uint32_t)len > IN_BYTES) {
        fail("fw_int8_kernels: kernel_cases.bin is empty or too large\n");
    }
    args[1] = (uint32_t)(uintptr_t)in_buf;
    args[2] = (uint32_t)len;
    if (mcutl_semihost_call(SH_SYS_READ, args) != 0u) {
        fail("fw_int8_kernels: short read\n");
    }
    count = *w++;
    for (i = 0; i < count; ++i) {
        const int32_t op = w[0], kernels = w[1], has_bias = w[13];
        if (op == 3) {
            mcutl_add_params_t p;
            const int32_t size = w[14];
            const int8_t *in1 = (const int8_t *)(w + 15), *in2 = in1 + 4 * words(size);
            int8_t *output = (int8_t *)&out_buf[out_words + 1u];
            if (out_words + 1u + (uint32_t)words(size) > OUT_BYTES / 4u) {
                fail("fw_int8_kernels: outputs too large\n");
            }
            p.input1_zero_point = w[2];
            p.input2_zero_point = w[3];
            p.output_zero_point = w[4];
            p.left_shift = w[5];
            p.input1_multiplier = w[6];
            p.input1_shift = w[7];
            p.input2_multiplier = w[8];
            p.input2_shift = w[9];
            p.output_multiplier = w[10];
            p.output_shift = w[11];
            p.act_min = w[12];
            p.act_max = w[13];
            out_buf[out_words] = (uint32_t)(kernels == 1
                                                ? mcutl_add_s8_dsp(&p, in1, in2, output, size)
                                                : mcutl_add_s8(&p, in1, in2, output, size));
            out_words += 1u + (uint32_t)words(size);
            w = (const int32_t *)(in2 + 4 * words(size));
            continue;
        }
        mcutl_dims_t in_d, f_d, out_d;
        const int32_t *mult, *shift, *bias;
        const int8_t *input, *filter;
        int8_t *output;
        int32_t c_out, status;
        dims_at(w + 14, &in_d);
        dims_at(w + 18, &f_d);
        dims_at(w + 22, &out_d);
        c_out = out_d.c;
        mult = w + 26;
        shift = mult + c_out;
        bias = has_bias ? shift + c_out : 0;
        input = (const int8_t *)(shift + c_out + (has_bias ? c_out : 0));
        filter = input + 4 * words(volume(&in_d));
        if (out_words + 1u + (uint32_t)words(volume(&out_d)) > OUT_BYTES / 4u) {
            fail("fw_int8_kernels: outputs too large\n");
        }
        output = (int8_t *)&out_buf[out_words + 1u];
        memset(scratch, 0xA5 + i, sizeof scratch);
        if (op == 1) {
            mcutl_conv_params_t p;
            p.input_zero_point = w[2];
            p.output_zero_point = w[3];
            p.stride_h = w[4];
            p.stride_w = w[5];
            p.dilation_h = w[6];
            p.dilation_w = w[7];
            p.pad_top = w[8];
            p.pad_left = w[9];
            p.groups = w[10];
            p.act_min = w[11];
            p.act_max = w[12];
            p.output_multiplier = mult;
            p.output_shift = shift;
            if (kernels == 1) {
                if (mcutl_conv2d_s8_dsp_get_buffer_size(&p, &f_d) > (int32_t)SCRATCH_BYTES) {
                    fail("fw_int8_kernels: scratch too small\n");
                }
                status = mcutl_conv2d_s8_dsp(&p, &in_d, input, &f_d, filter, bias, &out_d,
                                             output, scratch);
            } else {
                status = mcutl_conv2d_s8(&p, &in_d, input, &f_d, filter, bias, &out_d, output);
            }
        } else {
            mcutl_dw_conv_params_t p;
            p.input_zero_point = w[2];
            p.output_zero_point = w[3];
            p.stride_h = w[4];
            p.stride_w = w[5];
            p.dilation_h = w[6];
            p.dilation_w = w[7];
            p.pad_top = w[8];
            p.pad_left = w[9];
            p.depth_multiplier = w[10];
            p.act_min = w[11];
            p.act_max = w[12];
            p.output_multiplier = mult;
            p.output_shift = shift;
            if (kernels == 1) {
                if (mcutl_depthwise_conv2d_s8_dsp_get_buffer_size(&p, &in_d, &f_d, &out_d) >
                    (int32_t)SCRATCH_BYTES) {
                    fail("fw_int8_kernels: scratch too small\n");
                }
                status = mcutl_depthwise_conv2d_s8_dsp(&p, &in_d, input, &f_d, filter, bias,
                                                       &out_d, output, scratch);
            } else {
                status = mcutl_depthwise_conv2d_s8(&p, &in_d, input, &f_d, filter, bias,
                                                   &out_d, output);
            }
        }
        out_buf[out_words] = (uint32_t)status;
        out_words += 1u + (uint32_t)words(volume(&out_d));
        w = (const int32_t *)(filter + 4 * words(volume(&f_d)));
    }
    h = sh_open("kernel_out.bin", SH_MODE_WB);
    if (h < 0) {
        fail("fw_int8_kernels: cannot create kernel_out.bin\n");
    }
    args[0] = (uint32_t)h;
    args[1] = (uint32_t)(uintptr_t)out_buf;
    args[2] = out_words * 4u;
    if (mcutl_semihost_call(SH_SYS_WRITE, args) != 0u) {
        fail("fw_int8_kernels: short write\n");
    }
    mcutl_board_exit(0);
}
