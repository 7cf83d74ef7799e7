/*
 * uart_stm32_usart_v2.c - STM32 F0/F3/F7/L4 USART (ISR/RDR/TDR register layout),
 * RX by interrupt into a ring buffer, TX by polling TXE.
 */
#include <stdint.h>

#include "mcutl/board.h"
#include "target_config.h"
#include "uart_ring.h"
#include "gpio_stm32.h"

#define USART_CR1 (MCUTL_UART_BASE + 0x00u)
#define USART_BRR (MCUTL_UART_BASE + 0x0Cu)
#define USART_ISR (MCUTL_UART_BASE + 0x1Cu)
#define USART_ICR (MCUTL_UART_BASE + 0x20u)
#define USART_RDR (MCUTL_UART_BASE + 0x24u)
#define USART_TDR (MCUTL_UART_BASE + 0x28u)
#define ISR_ORE (1u << 3)
#define ISR_RXNE (1u << 5)
#define ISR_TXE (1u << 7)
#define ICR_ORECF (1u << 3)
#define CR1_UE (1u << 0)
#define CR1_RE (1u << 2)
#define CR1_TE (1u << 3)
#define CR1_RXNEIE (1u << 5)

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
    uint32_t isr;
    while ((isr = REG32(USART_ISR)) & (ISR_RXNE | ISR_ORE)) {
        if (isr & ISR_ORE) {
            REG32(USART_ICR) = ICR_ORECF;
            rx_dropped++;
        }
        if (isr & ISR_RXNE) {
            ring_push((uint8_t)REG32(USART_RDR));
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
        while (!(REG32(USART_ISR) & ISR_TXE)) {
        }
        REG32(USART_TDR) = buf[i];
    }
}
