/*
 * uart_ring.h - the receive ring buffer shared by the interrupt-driven UART drivers.
 *
 * The RX interrupt is the only producer, mcutl_board_getc() the only consumer.
 * Indices are free-running uint32_t; MCUTL_UART_RX_RING must be a power of two.
 */
#ifndef MCUTL_UART_RING_H
#define MCUTL_UART_RING_H

#include <stdint.h>

#ifndef MCUTL_UART_RX_RING
#define MCUTL_UART_RX_RING 1024u
#endif
#if (MCUTL_UART_RX_RING & (MCUTL_UART_RX_RING - 1u)) != 0
#error "MCUTL_UART_RX_RING must be a power of two"
#endif

#ifndef REG32
#define REG32(addr) (*(volatile uint32_t *)(addr))
#endif
#define NVIC_ISER(irq) REG32(0xE000E100u + 4u * ((uint32_t)(irq) / 32u))
#define NVIC_ISPR(irq) REG32(0xE000E200u + 4u * ((uint32_t)(irq) / 32u))
#define NVIC_BIT(irq) (1u << ((uint32_t)(irq) % 32u))

static volatile uint8_t rx_ring[MCUTL_UART_RX_RING];
static volatile uint32_t rx_head; /* written by the IRQ */
static volatile uint32_t rx_tail; /* written by getc */
static volatile uint32_t rx_dropped;

/* IRQ side: store one received byte, or count it as dropped when the ring is full. */
static inline void ring_push(uint8_t b)
{
    uint32_t head = rx_head;
    if (head - rx_tail >= MCUTL_UART_RX_RING) {
        rx_dropped++;
        return;
    }
    rx_ring[head & (MCUTL_UART_RX_RING - 1u)] = b;
    rx_head = head + 1u;
}

/* Thread side: sleep until a byte is there, then take it. */
static inline int ring_pop_blocking(void)
{
    for (;;) {
        __asm__ volatile("cpsid i" ::: "memory");
        if (rx_head != rx_tail) {
            uint32_t tail = rx_tail;
            uint8_t b = rx_ring[tail & (MCUTL_UART_RX_RING - 1u)];
            rx_tail = tail + 1u;
            __asm__ volatile("cpsie i" ::: "memory");
            return b;
        }
        /* WFI wakes on a pending interrupt even with PRIMASK set: no lost wake-up. */
        __asm__ volatile("wfi\ncpsie i" ::: "memory");
    }
}

uint32_t mcutl_board_rx_dropped(void)
{
    return rx_dropped;
}

#endif /* MCUTL_UART_RING_H */
