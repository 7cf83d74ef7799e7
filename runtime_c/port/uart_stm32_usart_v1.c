/*
 * uart_stm32_usart_v1.c - STM32 F1/F2/F4 USART (SR/DR register layout), RX by
 * interrupt into a ring buffer, TX by polling TXE.
 *
 * QEMU's stm32f2xx_usart drops bytes that arrive while UE/RE are clear, and
 * takes a new byte only once RXNE is clear; real chips overrun (SR.ORE) when
 * the interrupt is late, which is counted in mcutl_board_rx_dropped().
 */
#include <stdint.h>

#include "mcutl/board.h"
#include "target_config.h"
#include "uart_ring.h"
#include "gpio_stm32.h"

#define USART_SR (MCUTL_UART_BASE + 0x00u)
#define USART_DR (MCUTL_UART_BASE + 0x04u)
#define USART_BRR (MCUTL_UART_BASE + 0x08u)
#define USART_CR1 (MCUTL_UART_BASE + 0x0Cu)
#define SR_ORE (1u << 3)
#define SR_RXNE (1u << 5)
#define SR_TXE (1u << 7)
#define CR1_RE (1u << 2)
#define CR1_TE (1u << 3)
#define CR1_RXNEIE (1u << 5)
#define CR1_UE (1u << 13)

void mcutl_uart_irq_handler(void);

void mcutl_board_init(void)
{
    REG32(MCUTL_UART_RCC_REG) |= MCUTL_UART_RCC_BIT;
    gpio_route_uart_pins();
    REG32(USART_BRR) = MCUTL_UART_BRR;
    REG32(USART_CR1) = CR1_UE | CR1_TE | CR1_RE | CR1_RXNEIE;
    NVIC_ISER(MCUTL_UART_IRQ) = NVIC_BIT(MCUTL_UART_IRQ);
}

void mcutl_uart_irq_handler(void)
{
    uint32_t sr;
    while ((sr = REG32(USART_SR)) & (SR_RXNE | SR_ORE)) {
        uint8_t b = (uint8_t)REG32(USART_DR); /* SR then DR read clears ORE too */
        if (sr & SR_ORE) {
            rx_dropped++;
        }
        if (sr & SR_RXNE) {
            ring_push(b);
        }
    }
}

int mcutl_board_getc(void)
{
    return ring_pop_blocking();
}

void mcutl_board_write(const uint8_t *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        while (!(REG32(USART_SR) & SR_TXE)) {
        }
        REG32(USART_DR) = buf[i];
    }
}
