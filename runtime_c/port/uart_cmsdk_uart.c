/*
 * uart_cmsdk_uart.c - ARM CMSDK APB UART (MPS2 boards), RX by interrupt into a
 * ring buffer, TX by polling TXFULL.
 *
 * QEMU quirks handled here (../shared/notes/qemu.md): after enabling RX one
 * dummy DATA read re-arms QEMU's input (otherwise ~1 s stall); the RX
 * interrupt fires only on a new byte, so the IRQ is set pending once by hand.
 */
#include <stdint.h>

#include "mcutl/board.h"
#include "target_config.h"
#include "uart_ring.h"

#define UART_DATA (MCUTL_UART_BASE + 0x00u)
#define UART_STATE (MCUTL_UART_BASE + 0x04u)
#define UART_CTRL (MCUTL_UART_BASE + 0x08u)
#define UART_INTSTATUS (MCUTL_UART_BASE + 0x0Cu)
#define UART_BAUDDIV (MCUTL_UART_BASE + 0x10u)
#define STATE_TXFULL (1u << 0)
#define STATE_RXFULL (1u << 1)
#define STATE_RXOVR (1u << 3)
#define CTRL_TX_EN (1u << 0)
#define CTRL_RX_EN (1u << 1)
#define CTRL_RX_INTEN (1u << 3)
#define INT_RX (1u << 1)

void mcutl_uart_irq_handler(void);

void mcutl_board_init(void)
{
    REG32(UART_BAUDDIV) = MCUTL_UART_BRR;
    REG32(UART_CTRL) = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INTEN;
    (void)REG32(UART_DATA);
    NVIC_ISER(MCUTL_UART_IRQ) = NVIC_BIT(MCUTL_UART_IRQ);
    NVIC_ISPR(MCUTL_UART_IRQ) = NVIC_BIT(MCUTL_UART_IRQ);
}

void mcutl_uart_irq_handler(void)
{
    REG32(UART_INTSTATUS) = INT_RX; /* acknowledge before draining */
    for (;;) {
        uint32_t state = REG32(UART_STATE);
        if (state & STATE_RXOVR) {
            REG32(UART_STATE) = STATE_RXOVR;
            rx_dropped++;
        }
        if (!(state & STATE_RXFULL)) {
            break;
        }
        ring_push((uint8_t)REG32(UART_DATA));
    }
}

int mcutl_board_getc(void)
{
    return ring_pop_blocking();
}

void mcutl_board_write(const uint8_t *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        while (REG32(UART_STATE) & STATE_TXFULL) {
        }
        REG32(UART_DATA) = buf[i];
    }
}
