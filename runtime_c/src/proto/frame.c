/* Frame sealing/validation and the bounded output buffer. */
#include <string.h>

#include "mcutl/proto.h"

void mcutl_buf_init(mcutl_buf_t *b, uint8_t *data, size_t cap)
{
    b->data = data;
    b->cap = cap;
    b->len = 0;
    b->overflow = 0;
}

int mcutl_buf_put(mcutl_buf_t *b, const void *data, size_t n)
{
    size_t room = b->cap - b->len;
    int rc = 0;

    if (n > room) {
        n = room;
        b->overflow = 1;
        rc = -1;
    }
    if (n > 0u) {
        memcpy(b->data + b->len, data, n);
        b->len += n;
    }
    return rc;
}

int mcutl_buf_put_u8(mcutl_buf_t *b, uint8_t v)
{
    return mcutl_buf_put(b, &v, 1u);
}

int mcutl_buf_put_u16le(mcutl_buf_t *b, uint16_t v)
{
    uint8_t t[2];

    t[0] = (uint8_t)(v & 0xFFu);
    t[1] = (uint8_t)(v >> 8);
    return mcutl_buf_put(b, t, sizeof(t));
}

int mcutl_buf_put_u32le(mcutl_buf_t *b, uint32_t v)
{
    uint8_t t[4];

    t[0] = (uint8_t)(v & 0xFFu);
    t[1] = (uint8_t)((v >> 8) & 0xFFu);
    t[2] = (uint8_t)((v >> 16) & 0xFFu);
    t[3] = (uint8_t)(v >> 24);
    return mcutl_buf_put(b, t, sizeof(t));
}

int mcutl_buf_put_str(mcutl_buf_t *b, const char *s)
{
    if (s == NULL) {
        return 0;
    }
    return mcutl_buf_put(b, s, strlen(s));
}

int mcutl_buf_put_hex(mcutl_buf_t *b, uint32_t v, unsigned digits)
{
    static const char hex[] = "0123456789abcdef";
    char t[10];
    unsigned i;

    if (digits < 1u) {
        digits = 1u;
    } else if (digits > 8u) {
        digits = 8u;
    }
    t[0] = '0';
    t[1] = 'x';
    for (i = 0; i < digits; i++) {
        t[2u + i] = hex[(v >> (4u * (digits - 1u - i))) & 0x0Fu];
    }
    return mcutl_buf_put(b, t, 2u + digits);
}

int mcutl_buf_put_dec(mcutl_buf_t *b, uint32_t v)
{
    char t[10];
    size_t i = sizeof(t);

    do {
        t[--i] = (char)('0' + (char)(v % 10u));
        v /= 10u;
    } while (v != 0u);
    return mcutl_buf_put(b, t + i, sizeof(t) - i);
}

static uint16_t get_u16le(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] | ((unsigned)p[1] << 8));
}

static uint32_t get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

size_t mcutl_frame_seal(uint8_t *raw, uint8_t type, uint16_t seq, size_t payload_len)
{
    uint32_t crc;
    uint8_t *tail;

    if (payload_len > 0xFFFFu) {
        return 0;
    }
    raw[0] = (uint8_t)MCUTL_PROTO_VERSION;
    raw[1] = type;
    raw[2] = (uint8_t)(seq & 0xFFu);
    raw[3] = (uint8_t)(seq >> 8);
    raw[4] = (uint8_t)(payload_len & 0xFFu);
    raw[5] = (uint8_t)(payload_len >> 8);
    crc = mcutl_crc32(0u, raw, MCUTL_PROTO_HEADER_SIZE + payload_len);
    tail = raw + MCUTL_PROTO_HEADER_SIZE + payload_len;
    tail[0] = (uint8_t)(crc & 0xFFu);
    tail[1] = (uint8_t)((crc >> 8) & 0xFFu);
    tail[2] = (uint8_t)((crc >> 16) & 0xFFu);
    tail[3] = (uint8_t)(crc >> 24);
    return payload_len + MCUTL_PROTO_OVERHEAD;
}

mcutl_err_t mcutl_frame_decode(const uint8_t *raw, size_t n, mcutl_frame_t *f,
                               mcutl_buf_t *reason)
{
    size_t body;
    uint32_t got;
    uint32_t want;

    memset(f, 0, sizeof(*f));
    if (n >= MCUTL_PROTO_HEADER_SIZE) {
        f->version = raw[0];
        f->type = raw[1];
        f->seq = get_u16le(raw + 2);
        f->len = get_u16le(raw + 4);
    }
    if (n < MCUTL_PROTO_OVERHEAD) {
        if (reason != NULL) {
            mcutl_buf_put_str(reason, "frame is ");
            mcutl_buf_put_dec(reason, (uint32_t)n);
            mcutl_buf_put_str(reason, " bytes, minimum 10 (header 6 + crc 4)");
        }
        return MCUTL_ERR_TRUNCATED;
    }
    body = n - MCUTL_PROTO_OVERHEAD;
    if ((size_t)f->len != body) {
        if (reason != NULL) {
            mcutl_buf_put_str(reason, "len field says ");
            mcutl_buf_put_dec(reason, f->len);
            mcutl_buf_put_str(reason, " but frame carries ");
            mcutl_buf_put_dec(reason, (uint32_t)body);
            mcutl_buf_put_str(reason, " payload bytes");
        }
        return MCUTL_ERR_TRUNCATED;
    }
    got = get_u32le(raw + n - MCUTL_PROTO_CRC_SIZE);
    want = mcutl_crc32(0u, raw, n - MCUTL_PROTO_CRC_SIZE);
    if (got != want) {
        if (reason != NULL) {
            mcutl_buf_put_str(reason, "crc mismatch: got ");
            mcutl_buf_put_hex(reason, got, 8u);
            mcutl_buf_put_str(reason, " want ");
            mcutl_buf_put_hex(reason, want, 8u);
        }
        return MCUTL_ERR_BAD_CRC;
    }
    if (f->version != MCUTL_PROTO_VERSION) {
        if (reason != NULL) {
            mcutl_buf_put_str(reason, "version ");
            mcutl_buf_put_dec(reason, f->version);
            mcutl_buf_put_str(reason, " unsupported, want ");
            mcutl_buf_put_dec(reason, MCUTL_PROTO_VERSION);
        }
        return MCUTL_ERR_BAD_VERSION;
    }
    f->payload = raw + MCUTL_PROTO_HEADER_SIZE;
    return MCUTL_OK;
}
