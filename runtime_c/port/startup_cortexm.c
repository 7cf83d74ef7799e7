/*
 * startup_cortexm.c - reset, vector table and fault reporting for Cortex-M targets.
 *
 * Build-time configuration (from targets/<name>/target.toml, passed with -D):
 *   MCUTL_IRQ_COUNT     number of external interrupts in the vector table
 *   MCUTL_UART_IRQ      IRQ number of the serial port's receive interrupt
 *   MCUTL_SEMIHOSTING   1: log and exit through semihosting (QEMU, debugger attached)
 *                       0: standalone board: exit resets the chip
 * Linker symbols come from the linker script rendered by mcutl/toolchain.py.
 */
#include <stdint.h>

#include "mcutl/board.h"
#include "mcutl/fault.h"
#include "semihost.h"
#include "target_config.h"

#ifndef MCUTL_IRQ_COUNT
#error "MCUTL_IRQ_COUNT must be defined by the target"
#endif
#ifndef MCUTL_UART_IRQ
#error "MCUTL_UART_IRQ must be defined by the target"
#endif
#ifndef MCUTL_SEMIHOSTING
#define MCUTL_SEMIHOSTING 0
#endif

#ifndef REG32
#define REG32(addr) (*(volatile uint32_t *)(addr))
#endif
#define SCB_CPACR 0xE000ED88u
#define SCB_CFSR 0xE000ED28u
#define SCB_HFSR 0xE000ED2Cu
#define SCB_MMFAR 0xE000ED34u
#define SCB_BFAR 0xE000ED38u
#define SCB_AIRCR 0xE000ED0Cu
#define STACK_PAINT 0xA5A5A5A5u
#define SYST_CSR 0xE000E010u
#define SYST_RVR 0xE000E014u
#define SYST_CVR 0xE000E018u
#define SYST_RELOAD 0x00FFFFFFu

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sstack, _estack;

int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void Fault_Handler(void);
void mcutl_uart_irq_handler(void);
void SysTick_Handler(void);

static volatile uint32_t systick_wraps;

void SysTick_Handler(void)
{
    systick_wraps++;
}

uint32_t mcutl_board_ticks(void)
{
    uint32_t wraps, val;
    do {
        wraps = systick_wraps;
        val = REG32(SYST_CVR);
    } while (wraps != systick_wraps);
    return (wraps << 24) + (SYST_RELOAD - val);
}

/* Fault exceptions share one handler that finds the stacked frame and reports. */
__attribute__((naked)) void Fault_Handler(void)
{
    __asm__ volatile(
        "tst lr, #4\n"
        "ite eq\n"
        "mrseq r0, msp\n"
        "mrsne r0, psp\n"
        "b mcutl_fault_report\n");
}

void Default_Handler(void)
{
    Fault_Handler();
}

/* The vector table: every entry a real handler, the UART's RX interrupt wired in. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init"
__attribute__((section(".isr_vector"), used)) void (*const mcutl_vector_table[16 + MCUTL_IRQ_COUNT])(
    void) = {
    [0] = (void (*)(void))(uintptr_t)&_estack,
    [1] = Reset_Handler,
    [2] = Default_Handler, /* NMI */
    [3] = Fault_Handler,   /* HardFault */
    [4] = Fault_Handler,   /* MemManage */
    [5] = Fault_Handler,   /* BusFault */
    [6] = Fault_Handler,   /* UsageFault */
    [11] = Default_Handler, /* SVCall */
    [12] = Default_Handler, /* DebugMonitor */
    [14] = Default_Handler, /* PendSV */
    [15] = SysTick_Handler,
    [16 ... 16 + MCUTL_IRQ_COUNT - 1] = Default_Handler,
    [16 + MCUTL_UART_IRQ] = mcutl_uart_irq_handler,
};
#pragma GCC diagnostic pop

__attribute__((weak)) void mcutl_fault_hook(const mcutl_fault_info_t *info)
{
    (void)info;
}

static char *put_str(char *p, const char *s)
{
    while (*s != '\0') {
        *p++ = *s++;
    }
    return p;
}

static char *put_hex(char *p, const char *name, uint32_t v)
{
    static const char digits[] = "0123456789abcdef";
    p = put_str(p, name);
    p = put_str(p, "=0x");
    for (int shift = 28; shift >= 0; shift -= 4) {
        *p++ = digits[(v >> shift) & 0xFu];
    }
    *p++ = ' ';
    return p;
}

static const char *exception_name(uint32_t n)
{
    switch (n) {
    case 3: return "HardFault";
    case 4: return "MemManage";
    case 5: return "BusFault";
    case 6: return "UsageFault";
    default: return "UnexpectedException";
    }
}

/* Called from Fault_Handler with the stacked frame {r0,r1,r2,r3,r12,lr,pc,xpsr}. */
__attribute__((used, noreturn)) void mcutl_fault_report(const uint32_t *frame)
{
    mcutl_fault_info_t info;
    uint32_t ipsr;
    char line[200];
    char *p = line;

    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    info.exception = ipsr & 0x1FFu;
    info.lr = frame[5];
    info.pc = frame[6];
    info.psr = frame[7];
    info.cfsr = REG32(SCB_CFSR);
    info.hfsr = REG32(SCB_HFSR);
    info.mmfar = REG32(SCB_MMFAR);
    info.bfar = REG32(SCB_BFAR);
    info.sp = (uint32_t)(uintptr_t)frame;

    /* One fixed-format line: the host's QEMU runner parses it (mcutl/link/qemu.py). */
    p = put_str(p, "mcutl: FAULT ");
    p = put_str(p, exception_name(info.exception));
    *p++ = ' ';
    p = put_hex(p, "exc", info.exception);
    p = put_hex(p, "pc", info.pc);
    p = put_hex(p, "lr", info.lr);
    p = put_hex(p, "psr", info.psr);
    p = put_hex(p, "cfsr", info.cfsr);
    p = put_hex(p, "hfsr", info.hfsr);
    p = put_hex(p, "mmfar", info.mmfar);
    p = put_hex(p, "bfar", info.bfar);
    p = put_hex(p, "sp", info.sp);
    *p++ = '\n';
    *p = '\0';
    mcutl_board_log(line);
    mcutl_fault_hook(&info);
    mcutl_board_exit(MCUTL_EXIT_FAULT);
}

uint32_t mcutl_board_stack_unused(void)
{
    const uint32_t *w = &_sstack;
    while (w < &_estack && *w == STACK_PAINT) {
        w++;
    }
    return (uint32_t)((uintptr_t)w - (uintptr_t)&_sstack);
}

void mcutl_board_exit(int code)
{
#if MCUTL_SEMIHOSTING
    uint32_t block[2] = {MCUTL_SH_ADP_APPLICATION_EXIT, (uint32_t)code};
    (void)mcutl_semihost_call(MCUTL_SH_SYS_EXIT_EXTENDED, block);
#else
    (void)code;
    REG32(SCB_AIRCR) = (0x5FAu << 16) | (1u << 2); /* SYSRESETREQ */
#endif
    for (;;) {
        __asm__ volatile("wfi");
    }
}

void mcutl_board_log(const char *msg)
{
#if MCUTL_SEMIHOSTING
    (void)mcutl_semihost_call(MCUTL_SH_SYS_WRITE0, msg);
#else
    (void)msg;
#endif
}

void Reset_Handler(void)
{
    uint32_t *dst;
    const uint32_t *src;
    uint32_t sp;

    /* FPU: CP10/CP11 full access before any floating-point instruction. */
    REG32(SCB_CPACR) |= 0xFu << 20;
    __asm__ volatile("dsb\nisb" ::: "memory");

    /* Fault on unaligned word access and divide by zero, as a real bug would be. */
    REG32(0xE000ED14u) |= (1u << 4); /* CCR.DIV_0_TRP */

    for (src = &_sidata, dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0;
    }
    /* Paint the unused stack so mcutl_board_stack_unused() can find the high-water mark. */
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (dst = &_sstack; (uintptr_t)dst < (uintptr_t)sp - 64u;) {
        *dst++ = STACK_PAINT;
    }
    /* SysTick: free-running at the core clock, 2^24 per wrap. */
    REG32(SYST_RVR) = SYST_RELOAD;
    REG32(SYST_CVR) = 0u;
    REG32(SYST_CSR) = 7u; /* ENABLE | TICKINT | CLKSOURCE=processor */
    mcutl_board_exit(main());
}
