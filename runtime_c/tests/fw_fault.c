/*
 * fw_fault.c - test firmware: boots, then executes an undefined instruction.
 * The fault handler must report the fault registers and exit non-zero.
 */
#include <stdint.h>

#include "mcutl/board.h"

int main(void)
{
    static const uint8_t banner[] = "fault test: executing UDF\n";
    mcutl_board_init();
    mcutl_board_write(banner, sizeof banner - 1u);
    __asm__ volatile("udf #42");
    return 0;
}
