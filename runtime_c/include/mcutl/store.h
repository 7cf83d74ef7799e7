/*
 * store.h - non-volatile storage for the learned state: two slots, each erased, then
 * written, then read back. One backend per firmware (runtime_c/port/store_*.c), chosen
 * by the target's data: a file on the host (MCUTL_STORE_FILE), a file through
 * semihosting under QEMU (whose STM32 model ignores flash writes), the STM32 flash
 * sectors of [store] in target.toml on a board, or none.
 *
 * Offsets and sizes are multiples of 4; an erased byte reads 0xFF.
 */
#ifndef MCUTL_STORE_H
#define MCUTL_STORE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Bytes one slot can hold; 0 when this firmware has no store. */
uint32_t mcutl_store_slot_bytes(void);

/** What backs the store, for messages: "file", "semihosting", "flash" or "none". */
const char *mcutl_store_kind(void);

/** Erase at least the first @p bytes of @p slot (0 or 1). 0 on success. */
int mcutl_store_erase(uint32_t slot, uint32_t bytes);

/** Write @p n bytes at @p offset of an erased part of @p slot. 0 on success. */
int mcutl_store_write(uint32_t slot, uint32_t offset, const void *data, uint32_t n);

/** Read @p n bytes at @p offset of @p slot. 0 on success. */
int mcutl_store_read(uint32_t slot, uint32_t offset, void *data, uint32_t n);

#ifdef __cplusplus
}
#endif

#endif /* MCUTL_STORE_H */
