/*
 * fault.h - the fault report a Cortex-M port produces when a fault exception fires.
 */
#ifndef MCUTL_FAULT_H
#define MCUTL_FAULT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Exit code of a firmware that stopped on a fault exception. */
#define MCUTL_EXIT_FAULT 99

/** Registers captured by the fault handler (all little-endian u32 on the wire). */
typedef struct {
    uint32_t exception; /**< IPSR exception number: 3 HardFault, 4 MemManage, 5 BusFault, 6 UsageFault */
    uint32_t pc;        /**< stacked PC: the faulting instruction */
    uint32_t lr;        /**< stacked LR */
    uint32_t psr;       /**< stacked xPSR */
    uint32_t cfsr;      /**< SCB->CFSR (0xE000ED28): UFSR:BFSR:MMFSR */
    uint32_t hfsr;      /**< SCB->HFSR (0xE000ED2C) */
    uint32_t mmfar;     /**< SCB->MMFAR (0xE000ED34), valid if CFSR.MMARVALID */
    uint32_t bfar;      /**< SCB->BFAR (0xE000ED38), valid if CFSR.BFARVALID */
    uint32_t sp;        /**< stack pointer at the time of the fault (after stacking) */
} mcutl_fault_info_t;

/**
 * Called by the fault handler after the report was logged and before exit.
 * Weak no-op by default; the application overrides it to send the report over
 * the serial link. It runs in handler mode on whatever stack is left: keep it small.
 */
void mcutl_fault_hook(const mcutl_fault_info_t *info);

#ifdef __cplusplus
}
#endif

#endif /* MCUTL_FAULT_H */
