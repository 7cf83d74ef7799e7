/*
 * gpio_stm32.h - route UART pins to their alternate function (STM32 GPIO v2:
 * F2/F4/F7). The pin list comes from target.toml; QEMU ignores these writes.
 */
#ifndef MCUTL_GPIO_STM32_H
#define MCUTL_GPIO_STM32_H

#include <stdint.h>

#include "target_config.h"

typedef struct {
    uint32_t gpio_base; /* GPIOx base address */
    uint32_t pin;       /* 0..15 */
    uint32_t af;        /* alternate function number 0..15 */
} mcutl_pin_af_t;

static void gpio_route_uart_pins(void)
{
#ifdef MCUTL_UART_PINS
    static const mcutl_pin_af_t pins[] = MCUTL_UART_PINS;
    REG32(MCUTL_GPIO_RCC_REG) |= MCUTL_GPIO_RCC_BITS;
    for (uint32_t i = 0; i < sizeof pins / sizeof pins[0]; i++) {
        uint32_t base = pins[i].gpio_base, pin = pins[i].pin;
        volatile uint32_t *afr = (volatile uint32_t *)(base + 0x20u + 4u * (pin / 8u));
        *afr = (*afr & ~(0xFu << (4u * (pin % 8u)))) | (pins[i].af << (4u * (pin % 8u)));
        REG32(base + 0x00u) = (REG32(base + 0x00u) & ~(3u << (2u * pin))) | (2u << (2u * pin));
    }
#endif
}

#endif /* MCUTL_GPIO_STM32_H */
