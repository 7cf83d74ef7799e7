/*
 * mcutl serial protocol v1 -- device side.
 *
 * Frame before COBS (all integers little-endian):
 *   u8 version | u8 type | u16 seq | u16 len | payload[len] | u32 crc32
 * crc32 is zlib/IEEE CRC-32 over version..payload. On the wire a frame is
 * COBS-encoded and terminated by a single 0x00. See docs/protocol.md.
 *
 * C99, target-independent, no malloc, no libc beyond <string.h>.
 */
#ifndef MCUTL_PROTO_H
#define MCUTL_PROTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Sizes                                                                     */
/* ------------------------------------------------------------------------ */

#define MCUTL_PROTO_VERSION 1u

/* Largest payload this build accepts and produces. Override with -D. */
#ifndef MCUTL_PROTO_MAX_PAYLOAD
#define MCUTL_PROTO_MAX_PAYLOAD 1024u
#endif
#if (MCUTL_PROTO_MAX_PAYLOAD) < 64 || (MCUTL_PROTO_MAX_PAYLOAD) > 65535
#error "MCUTL_PROTO_MAX_PAYLOAD must be within 64..65535"
#endif

#define MCUTL_PROTO_HEADER_SIZE 6u  /* version, type, seq, len */
#define MCUTL_PROTO_CRC_SIZE 4u
#define MCUTL_PROTO_OVERHEAD (MCUTL_PROTO_HEADER_SIZE + MCUTL_PROTO_CRC_SIZE)
/* Largest decoded (pre-COBS) frame. */
#define MCUTL_PROTO_MAX_FRAME (MCUTL_PROTO_MAX_PAYLOAD + MCUTL_PROTO_OVERHEAD)

/* Upper bound of the COBS encoding of n bytes (delimiter not included). */
#define MCUTL_COBS_MAX_ENCODED(n) ((n) + (n) / 254u + 1u)
/* Upper bound of one wire frame: COBS(max frame) + the 0x00 delimiter. */
#define MCUTL_PROTO_MAX_WIRE (MCUTL_COBS_MAX_ENCODED(MCUTL_PROTO_MAX_FRAME) + 1u)

/* ------------------------------------------------------------------------ */
/* Message types                                                             */
/* ------------------------------------------------------------------------ */

#define MCUTL_MSG_HELLO 0x01u
#define MCUTL_MSG_ECHO 0x02u
#define MCUTL_MSG_EXIT 0x03u
/* Reserved for later work (no built-in handler). */
#define MCUTL_MSG_SAMPLE 0x10u
#define MCUTL_MSG_STEP 0x11u
#define MCUTL_MSG_INFER 0x12u
#define MCUTL_MSG_GET_PARAMS 0x13u
#define MCUTL_MSG_SET_PARAMS 0x14u
#define MCUTL_MSG_DIGEST 0x15u
#define MCUTL_MSG_STATS 0x16u
#define MCUTL_MSG_RESET 0x17u
#define MCUTL_MSG_RUN 0x18u
#define MCUTL_MSG_PROBE 0x19u
#define MCUTL_MSG_SAVE 0x1Au
#define MCUTL_MSG_LOAD 0x1Bu
#define MCUTL_MSG_PROFILE 0x1Cu /* profile builds only (`mcutl profile`) */
#define MCUTL_MSG_CONFIG 0x1Du
/* Response type = request type | MCUTL_MSG_RESPONSE_BIT. */
#define MCUTL_MSG_RESPONSE_BIT 0x80u
/* Error response (payload: u8 code | u8 request_type | utf-8 reason). */
#define MCUTL_MSG_ERROR 0x7Fu

/* HELLO response size without the two variable strings. */
#define MCUTL_HELLO_FIXED_SIZE 42u
#define MCUTL_MODEL_HASH_SIZE 32u

/* ------------------------------------------------------------------------ */
/* Error codes (u8 on the wire)                                              */
/* ------------------------------------------------------------------------ */

typedef uint8_t mcutl_err_t;

#define MCUTL_OK 0x00u
#define MCUTL_ERR_BAD_COBS 0x01u     /* COBS group cut short by the delimiter */
#define MCUTL_ERR_TRUNCATED 0x02u    /* < header+crc, or len field != frame size */
#define MCUTL_ERR_OVERSIZE 0x03u     /* frame longer than the receive buffer */
#define MCUTL_ERR_BAD_CRC 0x04u      /* CRC-32 mismatch */
#define MCUTL_ERR_BAD_VERSION 0x05u  /* version byte != MCUTL_PROTO_VERSION */
#define MCUTL_ERR_UNKNOWN_TYPE 0x06u /* no handler for the request type */
#define MCUTL_ERR_BAD_PAYLOAD 0x07u  /* handler rejected the payload */
#define MCUTL_ERR_INTERNAL 0x08u     /* handler overflowed its response buffer */
#define MCUTL_ERR_BAD_STATE 0x09u    /* request out of order (STEP before a whole SAMPLE) */
/* 0x0A..0x7F reserved for later protocol codes; 0x80..0xFF for handlers. */
#define MCUTL_ERR_APP_FIRST 0x80u

/* ------------------------------------------------------------------------ */
/* Bounded output buffer (payload building, reason text)                     */
/* ------------------------------------------------------------------------ */

typedef struct {
    uint8_t *data;    /* storage, cap bytes */
    size_t cap;       /* capacity in bytes */
    size_t len;       /* bytes written so far */
    uint8_t overflow; /* nonzero once any put did not fit completely */
} mcutl_buf_t;

/**
 * Initialise an empty buffer over caller storage.
 * @param b     buffer to initialise
 * @param data  storage (may be NULL only if cap == 0)
 * @param cap   capacity of data in bytes
 */
void mcutl_buf_init(mcutl_buf_t *b, uint8_t *data, size_t cap);

/**
 * Append bytes. Copies as much as fits; sets b->overflow if truncated.
 * @param b     buffer
 * @param data  bytes to append (may be NULL if n == 0)
 * @param n     number of bytes
 * @return 0 if everything fitted, -1 if truncated
 */
int mcutl_buf_put(mcutl_buf_t *b, const void *data, size_t n);

/**
 * Append one byte.
 * @param b  buffer
 * @param v  value
 * @return 0 on success, -1 if full (sets overflow)
 */
int mcutl_buf_put_u8(mcutl_buf_t *b, uint8_t v);

/**
 * Append a little-endian u16.
 * @param b  buffer
 * @param v  value
 * @return 0 on success, -1 if truncated (sets overflow)
 */
int mcutl_buf_put_u16le(mcutl_buf_t *b, uint16_t v);

/**
 * Append a little-endian u32.
 * @param b  buffer
 * @param v  value
 * @return 0 on success, -1 if truncated (sets overflow)
 */
int mcutl_buf_put_u32le(mcutl_buf_t *b, uint32_t v);

/**
 * Append a NUL-terminated string (without the NUL).
 * @param b  buffer
 * @param s  string; NULL appends nothing
 * @return 0 on success, -1 if truncated (sets overflow)
 */
int mcutl_buf_put_str(mcutl_buf_t *b, const char *s);

/**
 * Append "0x" and the low @p digits hex digits of @p v, lowercase.
 * @param b       buffer
 * @param v       value
 * @param digits  number of digits, clamped to 1..8
 * @return 0 on success, -1 if truncated (sets overflow)
 */
int mcutl_buf_put_hex(mcutl_buf_t *b, uint32_t v, unsigned digits);

/**
 * Append @p v in decimal.
 * @param b  buffer
 * @param v  value
 * @return 0 on success, -1 if truncated (sets overflow)
 */
int mcutl_buf_put_dec(mcutl_buf_t *b, uint32_t v);

/* ------------------------------------------------------------------------ */
/* CRC-32 (zlib / IEEE 802.3, reflected poly 0xEDB88320)                     */
/* ------------------------------------------------------------------------ */

/**
 * Update a CRC-32 exactly like zlib.crc32(data, crc).
 * @param crc   previous result, 0 to start
 * @param data  bytes to add (may be NULL if n == 0)
 * @param n     number of bytes
 * @return the CRC-32 of everything so far
 */
uint32_t mcutl_crc32(uint32_t crc, const void *data, size_t n);

/* ------------------------------------------------------------------------ */
/* COBS                                                                      */
/* ------------------------------------------------------------------------ */

/**
 * COBS-encode @p n bytes (no delimiter is appended). Output equals the
 * Python `cobs.cobs.encode`. In-place use is allowed when
 * src >= dst + n / 254 + 1 (the encoder never overtakes its input).
 * @param src  input bytes
 * @param n    input length
 * @param dst  output buffer
 * @param cap  capacity of dst; MCUTL_COBS_MAX_ENCODED(n) always suffices
 * @return encoded length (>= 1), or 0 if it does not fit in cap
 */
size_t mcutl_cobs_encode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap);

/**
 * Decode one COBS frame (delimiter excluded). dst == src is allowed.
 * @param src      encoded bytes; must not contain 0x00
 * @param n        encoded length
 * @param dst      output buffer
 * @param cap      capacity of dst
 * @param out_len  receives the decoded length (on MCUTL_OK)
 * @return MCUTL_OK, MCUTL_ERR_BAD_COBS (zero byte or group cut short) or
 *         MCUTL_ERR_OVERSIZE (decoded data longer than cap)
 */
mcutl_err_t mcutl_cobs_decode(const uint8_t *src, size_t n, uint8_t *dst, size_t cap,
                              size_t *out_len);

/* ------------------------------------------------------------------------ */
/* Incremental receiver: push wire bytes, get decoded frames                 */
/* ------------------------------------------------------------------------ */

typedef enum {
    MCUTL_RX_MORE = 0,  /* nothing complete yet (empty frames are ignored) */
    MCUTL_RX_FRAME = 1, /* buf[0..len) holds a decoded frame */
    MCUTL_RX_ERROR = 2  /* err holds MCUTL_ERR_BAD_COBS or MCUTL_ERR_OVERSIZE */
} mcutl_rx_status_t;

typedef struct {
    uint8_t *buf;    /* decoded bytes of the current frame */
    size_t cap;      /* capacity of buf */
    size_t len;      /* decoded length (valid after FRAME; partial after ERROR) */
    size_t wire_len; /* encoded bytes of the current frame, delimiter excluded */
    uint8_t code;    /* current COBS group code */
    uint8_t left;    /* data bytes still expected in the current group */
    uint8_t state;   /* internal */
    mcutl_err_t err; /* error code after MCUTL_RX_ERROR */
} mcutl_rx_t;

/**
 * Initialise a receiver over caller storage.
 * @param rx   receiver
 * @param buf  decoded-frame storage, normally MCUTL_PROTO_MAX_FRAME bytes
 * @param cap  capacity of buf
 */
void mcutl_rx_init(mcutl_rx_t *rx, uint8_t *buf, size_t cap);

/**
 * Push one wire byte. A frame longer than cap is discarded up to the next
 * 0x00, which then yields MCUTL_RX_ERROR with err = MCUTL_ERR_OVERSIZE; a
 * COBS group cut short by 0x00 yields err = MCUTL_ERR_BAD_COBS.
 * buf/len stay valid until the next call.
 * @param rx    receiver
 * @param byte  next byte from the wire
 * @return MCUTL_RX_MORE, MCUTL_RX_FRAME or MCUTL_RX_ERROR
 */
mcutl_rx_status_t mcutl_rx_push(mcutl_rx_t *rx, uint8_t byte);

/* ------------------------------------------------------------------------ */
/* Frames                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
    uint8_t version;
    uint8_t type;
    uint16_t seq;
    uint16_t len;           /* payload length */
    const uint8_t *payload; /* points into the decoded buffer */
} mcutl_frame_t;

/**
 * Validate a decoded (post-COBS) frame. Checks, in order: size >= 10
 * (TRUNCATED), len field == size - 10 (TRUNCATED), CRC (BAD_CRC), version
 * (BAD_VERSION). The type is not checked. Header fields of @p f are filled
 * whenever at least 6 bytes are present, even on error.
 * @param raw     decoded frame
 * @param n       its length
 * @param f       receives the fields (payload points into raw)
 * @param reason  if non-NULL, receives a short specific reason on error
 * @return MCUTL_OK or the error code
 */
mcutl_err_t mcutl_frame_decode(const uint8_t *raw, size_t n, mcutl_frame_t *f,
                               mcutl_buf_t *reason);

/**
 * Complete a raw frame in place: write the header into raw[0..6) and the CRC
 * after the payload, which the caller has already placed at raw + 6.
 * @param raw          buffer of at least payload_len + 10 bytes
 * @param type         message type
 * @param seq          sequence number
 * @param payload_len  payload length (<= 65535)
 * @return the raw frame length (payload_len + 10), or 0 if payload_len > 65535
 */
size_t mcutl_frame_seal(uint8_t *raw, uint8_t type, uint16_t seq, size_t payload_len);

/**
 * Build a complete wire frame: COBS(header | payload | crc) followed by 0x00.
 * @param type     message type
 * @param seq      sequence number
 * @param payload  payload bytes (may be NULL if len == 0)
 * @param len      payload length (<= 65535)
 * @param out      output buffer
 * @param cap      capacity; MCUTL_COBS_MAX_ENCODED(len + 10) + 1 suffices
 * @return bytes written including the delimiter, or 0 if it does not fit
 */
size_t mcutl_frame_encode(uint8_t type, uint16_t seq, const uint8_t *payload, size_t len,
                          uint8_t *out, size_t cap);

/* ------------------------------------------------------------------------ */
/* Server                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct mcutl_server mcutl_server_t;

/**
 * Request handler. Reads the request payload and appends the response
 * payload to @p resp (capacity MCUTL_PROTO_MAX_PAYLOAD).
 * On success return MCUTL_OK. On failure return an error code (normally
 * MCUTL_ERR_BAD_PAYLOAD, MCUTL_ERR_BAD_STATE or >= MCUTL_ERR_APP_FIRST) and leave a
 * short reason text in @p resp (reset resp->len to 0 first if payload was written).
 * If resp->overflow is set on success the server answers MCUTL_ERR_INTERNAL.
 * Application state is reachable as srv->cfg->user.
 */
typedef mcutl_err_t (*mcutl_handler_fn)(mcutl_server_t *srv, const uint8_t *req, size_t req_len,
                                        mcutl_buf_t *resp);

/* One entry of the application handler table. */
typedef struct {
    uint8_t type; /* request type, 0x01..0x7E */
    mcutl_handler_fn fn;
} mcutl_handler_t;

/* Byte output. write() must return only once the bytes are accepted. */
typedef struct {
    /* Write n bytes; return 0 on success, nonzero on failure. */
    int (*write)(void *ctx, const uint8_t *buf, size_t n);
    /* Optional: block until written bytes have left the device. May be NULL. */
    void (*flush)(void *ctx);
    void *ctx;
} mcutl_io_t;

/* Application configuration; must outlive the server. */
typedef struct {
    const char *target;         /* HELLO target name (<= 255 bytes used), may be NULL */
    const char *build_id;       /* HELLO build id (<= 255 bytes used), may be NULL */
    uint32_t arena_bytes;       /* HELLO arena size */
    const uint8_t *model_hash;  /* 32 bytes, or NULL for "no model" (all zero) */
    const mcutl_handler_t *handlers; /* application handlers, may be NULL */
    size_t n_handlers;
    /* Called after the EXIT response was written and flushed. NULL: EXIT is
     * answered with MCUTL_ERR_UNKNOWN_TYPE. Normally does not return. */
    void (*exit)(void *user, uint8_t code);
    void *user; /* application context for handlers and exit */
} mcutl_server_config_t;

/* Offset of the raw response inside tx so it can be COBS-encoded in place. */
#define MCUTL_SERVER_TX_OFFSET (MCUTL_PROTO_MAX_FRAME / 254u + 2u)

struct mcutl_server {
    const mcutl_server_config_t *cfg;
    mcutl_io_t io;
    mcutl_rx_t rx;
    uint32_t n_requests; /* handlers run (built-in or application) */
    uint32_t n_errors;   /* ERROR frames sent */
    uint8_t rx_buf[MCUTL_PROTO_MAX_FRAME];
    uint8_t tx_buf[MCUTL_SERVER_TX_OFFSET + MCUTL_PROTO_MAX_FRAME];
};

/* Return values of mcutl_server_feed_byte(). */
#define MCUTL_EV_NONE 0      /* byte consumed, nothing sent */
#define MCUTL_EV_RESPONSE 1  /* a normal response was sent */
#define MCUTL_EV_ERROR 2     /* an ERROR frame was sent */
#define MCUTL_EV_EXIT 3      /* EXIT answered and cfg->exit returned */
#define MCUTL_EV_IO_ERROR -1 /* io.write failed */

/**
 * Initialise a server. Writes nothing.
 * @param srv  server storage (about 2 * MCUTL_PROTO_MAX_FRAME bytes)
 * @param cfg  application configuration (kept by reference)
 * @param io   output functions (copied)
 */
void mcutl_server_init(mcutl_server_t *srv, const mcutl_server_config_t *cfg,
                       const mcutl_io_t *io);

/**
 * Feed one received byte. When it completes a frame, the frame is checked,
 * dispatched and answered (one response or ERROR frame) before returning.
 * For an accepted EXIT, the response is written, io.flush (if set) is called,
 * then cfg->exit; MCUTL_EV_EXIT is returned only if that hook returns.
 * Call from thread/main-loop context, not from an ISR: handlers run inline.
 * @param srv   initialised server
 * @param byte  next byte from the wire
 * @return MCUTL_EV_NONE, MCUTL_EV_RESPONSE, MCUTL_EV_ERROR, MCUTL_EV_EXIT or
 *         MCUTL_EV_IO_ERROR
 */
int mcutl_server_feed_byte(mcutl_server_t *srv, uint8_t byte);

#ifdef __cplusplus
}
#endif

#endif /* MCUTL_PROTO_H */
