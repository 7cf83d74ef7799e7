/* COBS encode/decode and the incremental frame receiver. */
#include <string.h>

#include "mcutl/proto.h"

/* rx states */
#define RX_IDLE 0u    /* between frames */
#define RX_IN 1u      /* inside a frame */
#define RX_DISCARD 2u /* frame overflowed buf: drop bytes until 0x00 */

void mcutl_rx_init(mcutl_rx_t *rx, uint8_t *buf, size_t cap)
{
    memset(rx, 0, sizeof(*rx));
    rx->buf = buf;
    rx->cap = cap;
    rx->state = RX_IDLE;
}

/* Append one decoded byte; switch to discard mode when buf is full. */
static void rx_emit(mcutl_rx_t *rx, uint8_t b)
{
    if (rx->len >= rx->cap) {
        rx->state = RX_DISCARD;
        return;
    }
    rx->buf[rx->len++] = b;
}

mcutl_rx_status_t mcutl_rx_push(mcutl_rx_t *rx, uint8_t byte)
{
    if (byte == 0u) {
        uint8_t state = rx->state;

        rx->state = RX_IDLE;
        if (state == RX_IDLE) {
            return MCUTL_RX_MORE; /* empty frame: ignored, used to resync */
        }
        if (state == RX_DISCARD) {
            rx->err = MCUTL_ERR_OVERSIZE;
            return MCUTL_RX_ERROR;
        }
        if (rx->left != 0u) {
            rx->err = MCUTL_ERR_BAD_COBS;
            return MCUTL_RX_ERROR;
        }
        return MCUTL_RX_FRAME;
    }

    if (rx->state == RX_IDLE) {
        rx->state = RX_IN;
        rx->len = 0;
        rx->wire_len = 0;
        rx->left = 0;
        rx->code = 0xFFu; /* "previous group had no implied zero" */
        rx->err = MCUTL_OK;
    }
    if (rx->wire_len != (size_t)-1) {
        rx->wire_len++;
    }
    if (rx->state == RX_DISCARD) {
        return MCUTL_RX_MORE;
    }
    if (rx->left == 0u) {
        /* code byte: the previous group (if not a full 0xFF one) ends in 0 */
        if (rx->code != 0xFFu) {
            rx_emit(rx, 0u);
        }
        rx->code = byte;
        rx->left = (uint8_t)(byte - 1u);
    } else {
        rx_emit(rx, byte);
        rx->left--;
    }
    return MCUTL_RX_MORE;
}

mcutl_err_t mcutl_cobs_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap,
                              size_t *out_len)
{
    mcutl_rx_t rx;
    size_t i;

    mcutl_rx_init(&rx, dst, cap);
    *out_len = 0;
    for (i = 0; i < n; i++) {
        if (src[i] == 0u) {
            return MCUTL_ERR_BAD_COBS;
        }
        (void)mcutl_rx_push(&rx, src[i]);
    }
    switch (mcutl_rx_push(&rx, 0u)) {
    case MCUTL_RX_FRAME:
        *out_len = rx.len;
        return MCUTL_OK;
    case MCUTL_RX_ERROR:
        return rx.err;
    default:
        return MCUTL_OK; /* n == 0: empty */
    }
}

/* Byte-at-a-time COBS encoder that back-fills each group's code byte. */
typedef struct {
    uint8_t *out;
    size_t cap;
    size_t pos;      /* next write position */
    size_t code_pos; /* position reserved for the open group's code */
    uint8_t code;    /* 1 + data bytes in the open group */
    uint8_t full;    /* out of space */
} cobs_enc_t;

static void enc_start(cobs_enc_t *e, uint8_t *out, size_t cap)
{
    e->out = out;
    e->cap = cap;
    e->code_pos = 0;
    e->pos = 1;
    e->code = 1;
    e->full = (uint8_t)(cap < 1u);
}

/* Close the open group and reserve a code byte for the next one. */
static void enc_next_group(cobs_enc_t *e)
{
    e->out[e->code_pos] = e->code;
    if (e->pos >= e->cap) {
        e->full = 1;
        return;
    }
    e->code_pos = e->pos++;
    e->code = 1;
}

static void enc_put(cobs_enc_t *e, uint8_t b)
{
    if (e->full) {
        return;
    }
    if (e->code == 0xFFu) { /* 254 data bytes: split lazily, no implied 0 */
        enc_next_group(e);
        if (e->full) {
            return;
        }
    }
    if (b == 0u) {
        enc_next_group(e);
        return;
    }
    if (e->pos >= e->cap) {
        e->full = 1;
        return;
    }
    e->out[e->pos++] = b;
    e->code++;
}

static void enc_put_bytes(cobs_enc_t *e, const uint8_t *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        enc_put(e, p[i]);
    }
}

/* Close the last group; return the encoded length or 0 on overflow. */
static size_t enc_finish(cobs_enc_t *e)
{
    if (e->full) {
        return 0;
    }
    e->out[e->code_pos] = e->code;
    return e->pos;
}

size_t mcutl_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap)
{
    cobs_enc_t e;

    enc_start(&e, dst, cap);
    enc_put_bytes(&e, src, n);
    return enc_finish(&e);
}

size_t mcutl_frame_encode(uint8_t type, uint16_t seq, const uint8_t *payload, size_t len,
                          uint8_t *out, size_t cap)
{
    uint8_t hdr[MCUTL_PROTO_HEADER_SIZE];
    uint8_t tail[MCUTL_PROTO_CRC_SIZE];
    uint32_t crc;
    cobs_enc_t e;
    size_t n;

    if (len > 0xFFFFu) {
        return 0;
    }
    hdr[0] = (uint8_t)MCUTL_PROTO_VERSION;
    hdr[1] = type;
    hdr[2] = (uint8_t)(seq & 0xFFu);
    hdr[3] = (uint8_t)(seq >> 8);
    hdr[4] = (uint8_t)(len & 0xFFu);
    hdr[5] = (uint8_t)(len >> 8);
    crc = mcutl_crc32(0u, hdr, sizeof(hdr));
    crc = mcutl_crc32(crc, payload, len);
    tail[0] = (uint8_t)(crc & 0xFFu);
    tail[1] = (uint8_t)((crc >> 8) & 0xFFu);
    tail[2] = (uint8_t)((crc >> 16) & 0xFFu);
    tail[3] = (uint8_t)(crc >> 24);

    enc_start(&e, out, cap);
    enc_put_bytes(&e, hdr, sizeof(hdr));
    enc_put_bytes(&e, payload, len);
    enc_put_bytes(&e, tail, sizeof(tail));
    n = enc_finish(&e);
    if (n == 0u || n >= cap) {
        return 0;
    }
    out[n] = 0u;
    return n + 1u;
}
