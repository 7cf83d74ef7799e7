/*
 * The store of an STM32F4/F7 board: two flash sectors given in the target's [store]
 * table (target_config.h: MCUTL_STORE_SLOT0/1_ADDR, _SECTOR, MCUTL_STORE_SLOT_BYTES; the
 * linker script keeps code out of them). Erase is a sector erase, writes are 32-bit
 * programming (PSIZE x32: a 2.7-3.6 V supply), reads are memory reads. The flash stalls
 * code fetches while it erases (about 1-2 s for 128 KB): bytes that arrive on the UART
 * meanwhile may be lost, and the host resends them.
 */
#include <string.h>

#include "mcutl/store.h"
#include "target_config.h"

#define FLASH_BASE_REG 0x40023C00u
#define FLASH_ACR (*(volatile uint32_t *)(FLASH_BASE_REG + 0x00u))
#define FLASH_KEYR (*(volatile uint32_t *)(FLASH_BASE_REG + 0x04u))
#define FLASH_SR (*(volatile uint32_t *)(FLASH_BASE_REG + 0x0Cu))
#define FLASH_CR (*(volatile uint32_t *)(FLASH_BASE_REG + 0x10u))

#define FLASH_KEY1 0x45670123u
#define FLASH_KEY2 0xCDEF89ABu
#define CR_PG (1u << 0)
#define CR_SER (1u << 1)
#define CR_SNB_SHIFT 3u
#define CR_PSIZE_X32 (2u << 8)
#define CR_STRT (1u << 16)
#define CR_LOCK (1u << 31)
#define SR_BSY (1u << 16)
#define SR_ERRORS 0x000001F2u /* OPERR, WRPERR, PGAERR, PGPERR, PGSERR, RDERR */
#define ACR_DCEN (1u << 10)
#define ACR_DCRST (1u << 12)

static const uint32_t slot_addr[2] = {MCUTL_STORE_SLOT0_ADDR, MCUTL_STORE_SLOT1_ADDR};
static const uint32_t slot_sector[2] = {MCUTL_STORE_SLOT0_SECTOR, MCUTL_STORE_SLOT1_SECTOR};

static int wait_ready(void)
{
    while ((FLASH_SR & SR_BSY) != 0u) {
    }
    if ((FLASH_SR & SR_ERRORS) != 0u) {
        FLASH_SR = SR_ERRORS; /* write 1 to clear */
        return -1;
    }
    return 0;
}

static void unlock(void)
{
    if ((FLASH_CR & CR_LOCK) != 0u) {
        FLASH_KEYR = FLASH_KEY1;
        FLASH_KEYR = FLASH_KEY2;
    }
    FLASH_SR = SR_ERRORS;
}

/* The F4's flash data cache (MCUTL_STORE_FLASH_DCACHE) may hold what the sector held
 * before: flush it. */
static void flush_data_cache(void)
{
#if MCUTL_STORE_FLASH_DCACHE
    uint32_t acr = FLASH_ACR;
    FLASH_ACR = acr & ~ACR_DCEN;
    FLASH_ACR = (acr & ~ACR_DCEN) | ACR_DCRST;
    FLASH_ACR = acr & ~ACR_DCRST;
#endif
}

static int in_slot(uint32_t slot, uint32_t offset, uint32_t n)
{
    return slot <= 1u && offset <= MCUTL_STORE_SLOT_BYTES &&
           n <= MCUTL_STORE_SLOT_BYTES - offset && (offset & 3u) == 0u && (n & 3u) == 0u;
}

uint32_t mcutl_store_slot_bytes(void)
{
    return MCUTL_STORE_SLOT_BYTES;
}

const char *mcutl_store_kind(void)
{
    return "flash";
}

int mcutl_store_erase(uint32_t slot, uint32_t bytes)
{
    int rc;
    if (!in_slot(slot, 0u, bytes & ~3u)) {
        return -1;
    }
    unlock();
    if (wait_ready() != 0) {
        FLASH_CR = CR_LOCK;
        return -1;
    }
    FLASH_CR = CR_SER | CR_PSIZE_X32 | (slot_sector[slot] << CR_SNB_SHIFT);
    FLASH_CR |= CR_STRT;
    rc = wait_ready();
    FLASH_CR = CR_LOCK;
    flush_data_cache();
    return rc;
}

int mcutl_store_write(uint32_t slot, uint32_t offset, const void *data, uint32_t n)
{
    const uint8_t *src = (const uint8_t *)data;
    uint32_t i;
    int rc = 0;
    if (!in_slot(slot, offset, n)) {
        return -1;
    }
    unlock();
    FLASH_CR = CR_PG | CR_PSIZE_X32;
    for (i = 0u; i < n && rc == 0; i += 4u) {
        uint32_t word;
        memcpy(&word, src + i, sizeof word);
        *(volatile uint32_t *)(slot_addr[slot] + offset + i) = word;
        __asm__ volatile("dsb" ::: "memory"); /* the write reaches the flash before BSY is read */
        rc = wait_ready();
    }
    FLASH_CR = CR_LOCK;
    flush_data_cache();
    return rc;
}

int mcutl_store_read(uint32_t slot, uint32_t offset, void *data, uint32_t n)
{
    if (!in_slot(slot, offset, n & ~3u) || (n & 3u) != 0u) {
        return -1;
    }
    memcpy(data, (const void *)(uintptr_t)(slot_addr[slot] + offset), n);
    return 0;
}
