/* No store: a target without a [store] section in its target.toml (SAVE answers so). */
#include "mcutl/store.h"

uint32_t mcutl_store_slot_bytes(void)
{
    return 0u;
}

const char *mcutl_store_kind(void)
{
    return "none";
}

int mcutl_store_erase(uint32_t slot, uint32_t bytes)
{
    (void)slot;
    (void)bytes;
    return -1;
}

int mcutl_store_write(uint32_t slot, uint32_t offset, const void *data, uint32_t n)
{
    (void)slot;
    (void)offset;
    (void)data;
    (void)n;
    return -1;
}

int mcutl_store_read(uint32_t slot, uint32_t offset, void *data, uint32_t n)
{
    (void)slot;
    (void)offset;
    (void)data;
    (void)n;
    return -1;
}
