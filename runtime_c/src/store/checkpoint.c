/*
 * Checkpoints of the learned state in a two-slot store: format and rules in
 * mcutl/checkpoint.h. No dynamic allocation; reads go through a small stack buffer.
 */
#include <string.h>

#include "mcutl/checkpoint.h"
#include "mcutl/proto.h"
#include "mcutl/store.h"

#define CKPT_MAGIC 0x5453434Du /* "MCST" */
#define CKPT_VERSION 1u
#define CKPT_CHUNK 64u

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t payload_bytes(const mcutl_ckpt_part_t *parts, uint32_t n_parts)
{
    uint32_t i, total = 0u;
    for (i = 0u; i < n_parts; i++) {
        total += parts[i].bytes;
    }
    return total;
}

/* The seq of a valid checkpoint of this key and size in the slot, or 0. */
static uint32_t slot_seq(uint32_t slot, const uint8_t *key, uint32_t bytes)
{
    uint8_t h[MCUTL_CKPT_HEADER_BYTES];
    uint8_t buf[CKPT_CHUNK];
    uint32_t off, crc = 0u;

    if (mcutl_store_read(slot, 0u, h, sizeof h) != 0) {
        return 0u;
    }
    if (get_u32(h) != CKPT_MAGIC || get_u32(h + 4) != CKPT_VERSION ||
        get_u32(h + 12) != bytes || memcmp(h + 20, key, MCUTL_CKPT_KEY_BYTES) != 0 ||
        get_u32(h + 28) != mcutl_crc32(0u, h, 28u) || get_u32(h + 8) == 0u) {
        return 0u;
    }
    for (off = 0u; off < bytes; off += CKPT_CHUNK) {
        uint32_t n = bytes - off < CKPT_CHUNK ? bytes - off : CKPT_CHUNK;
        if (mcutl_store_read(slot, MCUTL_CKPT_HEADER_BYTES + off, buf, n) != 0) {
            return 0u;
        }
        crc = mcutl_crc32(crc, buf, n);
    }
    return crc == get_u32(h + 16) ? get_u32(h + 8) : 0u;
}

/* The newest valid checkpoint: 1 and *info, or 0. */
static int newest(const uint8_t *key, uint32_t bytes, mcutl_ckpt_info_t *info)
{
    uint32_t s0 = slot_seq(0u, key, bytes);
    uint32_t s1 = slot_seq(1u, key, bytes);
    if (s0 == 0u && s1 == 0u) {
        return 0;
    }
    info->slot = s1 > s0 ? 1u : 0u;
    info->seq = s1 > s0 ? s1 : s0;
    return 1;
}

int mcutl_ckpt_save(const uint8_t key[MCUTL_CKPT_KEY_BYTES], const mcutl_ckpt_part_t *parts,
                    uint32_t n_parts, mcutl_ckpt_info_t *saved)
{
    uint8_t h[MCUTL_CKPT_HEADER_BYTES];
    mcutl_ckpt_info_t last;
    uint32_t bytes = payload_bytes(parts, n_parts);
    uint32_t i, off, slot, seq, crc = 0u;

    if (mcutl_store_slot_bytes() == 0u) {
        return MCUTL_CKPT_NO_STORE;
    }
    if (bytes > mcutl_store_slot_bytes() - MCUTL_CKPT_HEADER_BYTES) {
        return MCUTL_CKPT_TOO_BIG;
    }
    if (newest(key, bytes, &last)) {
        if (last.seq == 0xFFFFFFFFu) {
            return MCUTL_CKPT_IO; /* 4e9 saves: beyond the endurance of any flash */
        }
        slot = 1u - last.slot;
        seq = last.seq + 1u;
    } else {
        slot = 0u;
        seq = 1u;
    }
    if (mcutl_store_erase(slot, MCUTL_CKPT_HEADER_BYTES + bytes) != 0) {
        return MCUTL_CKPT_IO;
    }
    off = MCUTL_CKPT_HEADER_BYTES;
    for (i = 0u; i < n_parts; i++) {
        if (mcutl_store_write(slot, off, parts[i].data, parts[i].bytes) != 0) {
            return MCUTL_CKPT_IO;
        }
        crc = mcutl_crc32(crc, parts[i].data, parts[i].bytes);
        off += parts[i].bytes;
    }
    put_u32(h, CKPT_MAGIC);
    put_u32(h + 4, CKPT_VERSION);
    put_u32(h + 8, seq);
    put_u32(h + 12, bytes);
    put_u32(h + 16, crc);
    memcpy(h + 20, key, MCUTL_CKPT_KEY_BYTES);
    put_u32(h + 28, mcutl_crc32(0u, h, 28u));
    if (mcutl_store_write(slot, 0u, h, sizeof h) != 0 || slot_seq(slot, key, bytes) != seq) {
        return MCUTL_CKPT_IO;
    }
    saved->slot = slot;
    saved->seq = seq;
    return MCUTL_CKPT_OK;
}

int mcutl_ckpt_load(const uint8_t key[MCUTL_CKPT_KEY_BYTES], const mcutl_ckpt_part_t *parts,
                    uint32_t n_parts, mcutl_ckpt_info_t *loaded)
{
    mcutl_ckpt_info_t info;
    uint32_t bytes = payload_bytes(parts, n_parts);
    uint32_t i, off = MCUTL_CKPT_HEADER_BYTES;

    if (mcutl_store_slot_bytes() == 0u) {
        return MCUTL_CKPT_NO_STORE;
    }
    if (!newest(key, bytes, &info)) {
        return MCUTL_CKPT_NONE;
    }
    for (i = 0u; i < n_parts; i++) {
        if (mcutl_store_read(info.slot, off, parts[i].data, parts[i].bytes) != 0) {
            return MCUTL_CKPT_IO;
        }
        off += parts[i].bytes;
    }
    *loaded = info;
    return MCUTL_CKPT_OK;
}
