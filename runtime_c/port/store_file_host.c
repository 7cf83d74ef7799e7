/*
 * The store of the host build: a file named by the environment variable
 * MCUTL_STORE_FILE (no variable: no store). Slot k starts at k * STORE_SLOT_BYTES;
 * bytes never written read as erased (0xFF).
 *
 * Tests only: MCUTL_STORE_CRASH_AFTER=N ends the process (exit code 3) in the middle of
 * the write that takes the bytes this process wrote to the store past N, as a power cut
 * would.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcutl/store.h"

#define STORE_SLOT_BYTES (4u << 20)

static FILE *store_file;
static int store_opened;
static long crash_left = -1; /* bytes before the simulated power cut; -1: never */

static FILE *store(void)
{
    if (!store_opened) {
        const char *path = getenv("MCUTL_STORE_FILE");
        const char *crash = getenv("MCUTL_STORE_CRASH_AFTER");
        store_opened = 1;
        if (path != NULL && path[0] != '\0') {
            store_file = fopen(path, "r+b");
            if (store_file == NULL) {
                store_file = fopen(path, "w+b");
            }
        }
        if (crash != NULL) {
            crash_left = strtol(crash, NULL, 10);
        }
    }
    return store_file;
}

static int in_slot(uint32_t slot, uint32_t offset, uint32_t n)
{
    return store() != NULL && slot <= 1u && offset <= STORE_SLOT_BYTES &&
           n <= STORE_SLOT_BYTES - offset &&
           fseek(store_file, (long)(slot * STORE_SLOT_BYTES + offset), SEEK_SET) == 0;
}

static int put(uint32_t slot, uint32_t offset, const void *data, uint32_t n)
{
    if (!in_slot(slot, offset, n)) {
        return -1;
    }
    if (crash_left >= 0 && (long)n > crash_left) {
        (void)fwrite(data, 1u, (size_t)crash_left, store_file); /* power fails mid-write */
        (void)fflush(store_file);
        _Exit(3);
    }
    if (crash_left >= 0) {
        crash_left -= (long)n;
    }
    return fwrite(data, 1u, n, store_file) == n && fflush(store_file) == 0 ? 0 : -1;
}

uint32_t mcutl_store_slot_bytes(void)
{
    return store() != NULL ? STORE_SLOT_BYTES : 0u;
}

const char *mcutl_store_kind(void)
{
    return store() != NULL ? "file" : "none";
}

int mcutl_store_erase(uint32_t slot, uint32_t bytes)
{
    uint8_t erased[256];
    uint32_t off;
    memset(erased, 0xFF, sizeof erased);
    for (off = 0u; off < bytes; off += (uint32_t)sizeof erased) {
        uint32_t n = bytes - off < sizeof erased ? bytes - off : (uint32_t)sizeof erased;
        if (put(slot, off, erased, n) != 0) {
            return -1;
        }
    }
    return 0;
}

int mcutl_store_write(uint32_t slot, uint32_t offset, const void *data, uint32_t n)
{
    return put(slot, offset, data, n);
}

int mcutl_store_read(uint32_t slot, uint32_t offset, void *data, uint32_t n)
{
    size_t got;
    if (!in_slot(slot, offset, n)) {
        return -1;
    }
    got = fread(data, 1u, n, store_file);
    memset((uint8_t *)data + got, 0xFF, n - got); /* past the end of the file: erased */
    clearerr(store_file);
    return 0;
}
