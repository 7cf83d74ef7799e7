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
#include "mcutl/store.h"

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

/*
 * The checkpoint store (mcutl/store.h) of mcutl_train_save() / mcutl_train_load(): none
 * here, so they answer MCUTL_CKPT_NO_STORE. To keep the learned state across resets,
 * define these four functions over two erasable regions of your flash (or EEPROM, or an
 * SD card); runtime_c/port/store_stm32_flash.c is the STM32F4 one mcutl firmware uses.
 */
__attribute__((weak)) uint32_t mcutl_store_slot_bytes(void)
{
    return 0u;
}

__attribute__((weak)) const char *mcutl_store_kind(void)
{
    return "none";
}

__attribute__((weak)) int mcutl_store_erase(uint32_t slot, uint32_t bytes)
{
    (void)slot;
    (void)bytes;
    return -1;
}

__attribute__((weak)) int mcutl_store_write(uint32_t slot, uint32_t offset, const void *data,
                                            uint32_t n)
{
    (void)slot;
    (void)offset;
    (void)data;
    (void)n;
    return -1;
}

__attribute__((weak)) int mcutl_store_read(uint32_t slot, uint32_t offset, void *data,
                                           uint32_t n)
{
    (void)slot;
    (void)offset;
    (void)data;
    (void)n;
    return -1;
}
