/*
 * The store of a QEMU firmware: QEMU's STM32 models ignore flash writes, so the two slots
 * live in a file on the host through semihosting (MCUTL_STORE_NAME, default
 * "mcutl.store", relative to QEMU's working directory: the session runs QEMU in the
 * build folder). Slot k starts at k * STORE_SLOT_BYTES; bytes past the end of the file
 * read as erased (0xFF). Linked only into semihosting builds.
 */
#include <string.h>

#include "mcutl/store.h"
#include "semihost.h"

#ifndef MCUTL_STORE_NAME
#define MCUTL_STORE_NAME "mcutl.store"
#endif

#define STORE_SLOT_BYTES (4u << 20)
#define SH_SYS_OPEN 0x01u
#define SH_SYS_WRITE 0x05u
#define SH_SYS_READ 0x06u
#define SH_SYS_SEEK 0x0Au
#define SH_SYS_FLEN 0x0Cu
#define SH_MODE_RB_PLUS 3u /* "r+b" */
#define SH_MODE_WB_PLUS 7u /* "w+b" */

static int32_t store_handle = -1;
static int store_opened;

static int32_t store(void)
{
    if (!store_opened) {
        uint32_t args[3];
        store_opened = 1;
        args[0] = (uint32_t)(uintptr_t)MCUTL_STORE_NAME;
        args[1] = SH_MODE_RB_PLUS;
        args[2] = (uint32_t)(sizeof MCUTL_STORE_NAME - 1u);
        store_handle = (int32_t)mcutl_semihost_call(SH_SYS_OPEN, args);
        if (store_handle < 0) {
            args[1] = SH_MODE_WB_PLUS;
            store_handle = (int32_t)mcutl_semihost_call(SH_SYS_OPEN, args);
        }
    }
    return store_handle;
}

static int seek(uint32_t slot, uint32_t offset, uint32_t n)
{
    uint32_t args[2];
    if (store() < 0 || slot > 1u || offset > STORE_SLOT_BYTES || n > STORE_SLOT_BYTES - offset) {
        return -1;
    }
    args[0] = (uint32_t)store_handle;
    args[1] = slot * STORE_SLOT_BYTES + offset;
    return mcutl_semihost_call(SH_SYS_SEEK, args) == 0u ? 0 : -1;
}

uint32_t mcutl_store_slot_bytes(void)
{
    return store() >= 0 ? STORE_SLOT_BYTES : 0u;
}

const char *mcutl_store_kind(void)
{
    return store() >= 0 ? "semihosting" : "none";
}

int mcutl_store_write(uint32_t slot, uint32_t offset, const void *data, uint32_t n)
{
    uint32_t args[3];
    if (seek(slot, offset, n) != 0) {
        return -1;
    }
    args[0] = (uint32_t)store_handle;
    args[1] = (uint32_t)(uintptr_t)data;
    args[2] = n;
    return mcutl_semihost_call(SH_SYS_WRITE, args) == 0u ? 0 : -1; /* 0: all written */
}

int mcutl_store_erase(uint32_t slot, uint32_t bytes)
{
    uint8_t erased[256];
    uint32_t off;
    memset(erased, 0xFF, sizeof erased);
    for (off = 0u; off < bytes; off += (uint32_t)sizeof erased) {
        uint32_t n = bytes - off < sizeof erased ? bytes - off : (uint32_t)sizeof erased;
        if (mcutl_store_write(slot, off, erased, n) != 0) {
            return -1;
        }
    }
    return 0;
}

int mcutl_store_read(uint32_t slot, uint32_t offset, void *data, uint32_t n)
{
    uint32_t args[3];
    uint32_t flen_args[1];
    uint32_t at = slot * STORE_SLOT_BYTES + offset;
    uint32_t len, have;
    if (seek(slot, offset, n) != 0) {
        return -1;
    }
    flen_args[0] = (uint32_t)store_handle;
    len = mcutl_semihost_call(SH_SYS_FLEN, flen_args);
    if ((int32_t)len < 0) {
        return -1;
    }
    have = len <= at ? 0u : (len - at < n ? len - at : n);
    memset((uint8_t *)data + have, 0xFF, n - have); /* past the end of the file: erased */
    if (have == 0u) {
        return 0;
    }
    args[0] = (uint32_t)store_handle;
    args[1] = (uint32_t)(uintptr_t)data;
    args[2] = have;
    return mcutl_semihost_call(SH_SYS_READ, args) == 0u ? 0 : -1; /* 0: all read */
}
