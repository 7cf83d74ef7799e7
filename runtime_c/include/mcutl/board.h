/*
 * board.h - what the target-independent runtime needs from a board.
 *
 * One implementation per port (runtime_c/port/): a Cortex-M UART driver with an
 * RX interrupt and ring buffer, or the host build (stdin/stdout).
 */
#ifndef MCUTL_BOARD_H
#define MCUTL_BOARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Bring up the serial port. Bytes that arrive before this call may be lost. */
void mcutl_board_init(void);

/** Block until one byte has been received; returns it (0..255). Sleeps (WFI) while waiting. */
int mcutl_board_getc(void);

/** Send @p n bytes; returns when all are handed to the UART. */
void mcutl_board_write(const uint8_t *buf, size_t n);

/** Human-readable diagnostics (semihosting stderr under QEMU, stderr on host). Never the link. */
void mcutl_board_log(const char *msg);

/** Number of received bytes the driver had to drop (ring buffer full or UART overrun). */
uint32_t mcutl_board_rx_dropped(void);

/** Bytes of stack never touched since boot (painted at reset); 0 if unknown. */
uint32_t mcutl_board_stack_unused(void);

/**
 * Free-running tick counter for cost measurements: core clock cycles on Cortex-M
 * (SysTick; under QEMU `-icount shift=0` it counts instructions x clock_hz/1e9),
 * nanoseconds on host. Wraps at 2^32; subtract two readings.
 */
uint32_t mcutl_board_ticks(void);

/** End the program with @p code (semihosting exit under QEMU, exit() on host, reset on a board). */
void mcutl_board_exit(int code) __attribute__((noreturn));

#ifdef __cplusplus
}
#endif

#endif /* MCUTL_BOARD_H */
