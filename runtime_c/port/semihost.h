/*
 * semihost.h - ARM semihosting calls (BKPT 0xAB), used only when MCUTL_SEMIHOSTING=1.
 *
 * Without a debugger or QEMU's `-semihosting-config enable=on`, BKPT is a fatal
 * fault: boards built for standalone use set MCUTL_SEMIHOSTING=0.
 */
#ifndef MCUTL_SEMIHOST_H
#define MCUTL_SEMIHOST_H

#include <stdint.h>

#define MCUTL_SH_SYS_WRITE0 0x04u
#define MCUTL_SH_SYS_EXIT_EXTENDED 0x20u
#define MCUTL_SH_ADP_APPLICATION_EXIT 0x20026u

static inline uint32_t mcutl_semihost_call(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

#endif /* MCUTL_SEMIHOST_H */
