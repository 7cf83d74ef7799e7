/*
 * mcutl_lib_board.c - the board functions the learner library references, for a
 * firmware that is not an mcutl firmware (`mcutl export BUILD --lib DIR`).
 *
 * The generated train.c also carries the serial-protocol handlers (STEP reports the
 * ticks of a step, STATS the unused stack and the dropped receive bytes). A firmware
 * that calls the C API (mcutl/train.h) directly never runs them, but without
 * --gc-sections the linker still needs these three symbols. They are weak: define any
 * of them in your own firmware and yours is used, e.g.
 *
 *     uint32_t mcutl_board_ticks(void) { return DWT->CYCCNT; }
 */
#include <stdint.h>

#include "mcutl/board.h"

/** Free-running tick counter; 0 here (no timer known). */
__attribute__((weak)) uint32_t mcutl_board_ticks(void)
{
    return 0u;
}

/** Bytes of stack never used; 0 = unknown. */
__attribute__((weak)) uint32_t mcutl_board_stack_unused(void)
{
    return 0u;
}

/** Received bytes dropped by a serial driver; the library has none. */
__attribute__((weak)) uint32_t mcutl_board_rx_dropped(void)
{
    return 0u;
}
