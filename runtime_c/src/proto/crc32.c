/* CRC-32 (zlib / IEEE 802.3), nibble-table variant: 64 bytes of flash. */
#include "mcutl/proto.h"

/* crc of each 4-bit value, reflected polynomial 0xEDB88320. */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t mcutl_crc32(uint32_t crc, const void *data, size_t n)
{
    const uint8_t *p = (const uint8_t *)data;
    uint32_t c = ~crc;
    size_t i;

    for (i = 0; i < n; i++) {
        c ^= p[i];
        c = crc_nibble[c & 0x0Fu] ^ (c >> 4);
        c = crc_nibble[c & 0x0Fu] ^ (c >> 4);
    }
    return ~c;
}
