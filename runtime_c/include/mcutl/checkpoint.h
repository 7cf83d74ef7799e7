/*
 * checkpoint.h - the learned state in a double-buffered store (mcutl/store.h).
 *
 * A checkpoint is a 32-byte header and a payload (the parts given, in order):
 *
 *   u32 magic 'MCST' | u32 version 1 | u32 seq | u32 payload bytes | u32 payload crc32 |
 *   u8 key[8] (the model hash: a checkpoint of another model is never loaded) |
 *   u32 crc32 of the 28 bytes before
 *
 * Saving writes the slot that does not hold the newest valid checkpoint: erase, payload,
 * then the header last, then reads it back. A reset or power cut at any point leaves the
 * newest valid checkpoint (the previous one, or this one once its header is written):
 * at most the updates since the last save are lost. Loading takes the valid checkpoint
 * with the highest seq and checks its CRC before anything is overwritten.
 */
#ifndef MCUTL_CHECKPOINT_H
#define MCUTL_CHECKPOINT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MCUTL_CKPT_HEADER_BYTES 32u
#define MCUTL_CKPT_KEY_BYTES 8u

/* Status codes. */
#define MCUTL_CKPT_OK 0
#define MCUTL_CKPT_NO_STORE 1 /* this firmware has no store */
#define MCUTL_CKPT_TOO_BIG 2  /* the state does not fit a slot */
#define MCUTL_CKPT_IO 3       /* the store failed, or what was written does not read back */
#define MCUTL_CKPT_NONE 4     /* no valid checkpoint of this model */

typedef struct {
    void *data;
    uint32_t bytes; /* a multiple of 4 */
} mcutl_ckpt_part_t;

typedef struct {
    uint32_t seq;  /* 1, 2, ... (0: none) */
    uint32_t slot; /* 0 or 1 */
} mcutl_ckpt_info_t;

/** Save the parts as a new checkpoint (seq = newest + 1). */
int mcutl_ckpt_save(const uint8_t key[MCUTL_CKPT_KEY_BYTES], const mcutl_ckpt_part_t *parts,
                    uint32_t n_parts, mcutl_ckpt_info_t *saved);

/** Load the newest valid checkpoint of this key into the parts (their sizes must match). */
int mcutl_ckpt_load(const uint8_t key[MCUTL_CKPT_KEY_BYTES], const mcutl_ckpt_part_t *parts,
                    uint32_t n_parts, mcutl_ckpt_info_t *loaded);

#ifdef __cplusplus
}
#endif

#endif /* MCUTL_CHECKPOINT_H */
