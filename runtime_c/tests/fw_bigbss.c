/*
 * fw_bigbss.c - test firmware whose static data (MCUTL_TEST_BSS_BYTES) cannot fit
 * the target's SRAM: the link must fail with a clear message.
 */
#include <stdint.h>

#include "mcutl/board.h"

#ifndef MCUTL_TEST_BSS_BYTES
#define MCUTL_TEST_BSS_BYTES 140000
#endif

static uint8_t big[MCUTL_TEST_BSS_BYTES];

int main(void)
{
    mcutl_board_init();
    big[MCUTL_TEST_BSS_BYTES - 1u] = 1u;
    mcutl_board_write(big + MCUTL_TEST_BSS_BYTES - 1u, 1u);
    return big[0];
}
