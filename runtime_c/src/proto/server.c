/* Request/response server: receive, validate, dispatch, answer. */
#include <string.h>

#include "mcutl/proto.h"

/* The raw response is built at tx_buf + MCUTL_SERVER_TX_OFFSET and
 * COBS-encoded in place towards tx_buf[0]; the encoder never overtakes its
 * input because the offset exceeds the worst-case COBS overhead. */
static uint8_t *tx_raw(mcutl_server_t *srv)
{
    return srv->tx_buf + MCUTL_SERVER_TX_OFFSET;
}

static uint8_t *tx_payload(mcutl_server_t *srv)
{
    return tx_raw(srv) + MCUTL_PROTO_HEADER_SIZE;
}

/* Seal, encode and write the frame whose payload is already in place. */
static int send_frame(mcutl_server_t *srv, uint8_t type, uint16_t seq, size_t payload_len)
{
    size_t n = mcutl_frame_seal(tx_raw(srv), type, seq, payload_len);
    size_t m = mcutl_cobs_encode(tx_raw(srv), n, srv->tx_buf, sizeof(srv->tx_buf) - 1u);

    if (n == 0u || m == 0u) {
        return MCUTL_EV_IO_ERROR; /* unreachable: sizes are bounded */
    }
    srv->tx_buf[m] = 0u;
    if (srv->io.write(srv->io.ctx, srv->tx_buf, m + 1u) != 0) {
        return MCUTL_EV_IO_ERROR;
    }
    return MCUTL_EV_RESPONSE;
}

/* Reason text goes straight after the code and request_type bytes. */
static void reason_init(mcutl_server_t *srv, mcutl_buf_t *r)
{
    mcutl_buf_init(r, tx_payload(srv) + 2, MCUTL_PROTO_MAX_PAYLOAD - 2u);
}

/* Send ERROR: payload = code | request_type | reason (already in place). */
static int send_error(mcutl_server_t *srv, mcutl_err_t code, uint8_t req_type, uint16_t seq,
                      size_t reason_len)
{
    int rc;

    tx_payload(srv)[0] = code;
    tx_payload(srv)[1] = req_type;
    srv->n_errors++;
    rc = send_frame(srv, (uint8_t)MCUTL_MSG_ERROR, seq, 2u + reason_len);
    return rc == MCUTL_EV_RESPONSE ? MCUTL_EV_ERROR : rc;
}

/* Best-effort type/seq of a frame that failed a framing check. */
static void peek_header(const mcutl_rx_t *rx, uint8_t *type, uint16_t *seq)
{
    *type = rx->len >= 2u ? rx->buf[1] : 0u;
    *seq = rx->len >= 4u ? (uint16_t)((unsigned)rx->buf[2] | ((unsigned)rx->buf[3] << 8)) : 0u;
}

/* ---- built-in handlers ------------------------------------------------- */

static void put_short_str(mcutl_buf_t *b, const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0u;

    if (n > 255u) {
        n = 255u;
    }
    mcutl_buf_put_u8(b, (uint8_t)n);
    if (n > 0u) {
        mcutl_buf_put(b, s, n);
    }
}

static mcutl_err_t handle_hello(mcutl_server_t *srv, const uint8_t *req, size_t req_len,
                                mcutl_buf_t *resp)
{
    const mcutl_server_config_t *cfg = srv->cfg;
    unsigned i;

    (void)req; /* request payload is reserved; ignored in v1 */
    (void)req_len;
    mcutl_buf_put_u16le(resp, (uint16_t)MCUTL_PROTO_VERSION);
    mcutl_buf_put_u16le(resp, (uint16_t)MCUTL_PROTO_MAX_PAYLOAD);
    mcutl_buf_put_u32le(resp, cfg->arena_bytes);
    for (i = 0; i < MCUTL_MODEL_HASH_SIZE; i++) {
        mcutl_buf_put_u8(resp, cfg->model_hash != NULL ? cfg->model_hash[i] : 0u);
    }
    put_short_str(resp, cfg->target);
    put_short_str(resp, cfg->build_id);
    return MCUTL_OK;
}

static mcutl_err_t handle_echo(mcutl_server_t *srv, const uint8_t *req, size_t req_len,
                               mcutl_buf_t *resp)
{
    (void)srv;
    mcutl_buf_put(resp, req, req_len);
    return MCUTL_OK;
}

static mcutl_err_t handle_exit(mcutl_server_t *srv, const uint8_t *req, size_t req_len,
                               mcutl_buf_t *resp)
{
    (void)req;
    if (srv->cfg->exit == NULL) {
        mcutl_buf_put_str(resp, "EXIT not supported by this build");
        return MCUTL_ERR_UNKNOWN_TYPE;
    }
    if (req_len != 1u) {
        mcutl_buf_put_str(resp, "EXIT wants 1 payload byte (exit code), got ");
        mcutl_buf_put_dec(resp, (uint32_t)req_len);
        return MCUTL_ERR_BAD_PAYLOAD;
    }
    return MCUTL_OK; /* the exit itself happens after the response is out */
}

static const mcutl_handler_t builtin_handlers[] = {
    {(uint8_t)MCUTL_MSG_HELLO, handle_hello},
    {(uint8_t)MCUTL_MSG_ECHO, handle_echo},
    {(uint8_t)MCUTL_MSG_EXIT, handle_exit},
};

static mcutl_handler_fn find_handler(const mcutl_server_t *srv, uint8_t type)
{
    size_t i;

    if (type == 0u || type >= MCUTL_MSG_ERROR) {
        return NULL; /* 0x7F..0xFF are ERROR / response types */
    }
    for (i = 0; i < sizeof(builtin_handlers) / sizeof(builtin_handlers[0]); i++) {
        if (builtin_handlers[i].type == type) {
            return builtin_handlers[i].fn;
        }
    }
    for (i = 0; i < srv->cfg->n_handlers; i++) {
        if (srv->cfg->handlers[i].type == type && srv->cfg->handlers[i].fn != NULL) {
            return srv->cfg->handlers[i].fn;
        }
    }
    return NULL;
}

/* ---- dispatch ---------------------------------------------------------- */

static int on_rx_error(mcutl_server_t *srv)
{
    const mcutl_rx_t *rx = &srv->rx;
    mcutl_buf_t r;
    uint8_t type;
    uint16_t seq;

    peek_header(rx, &type, &seq);
    reason_init(srv, &r);
    if (rx->err == MCUTL_ERR_OVERSIZE) {
        mcutl_buf_put_str(&r, "frame of ");
        mcutl_buf_put_dec(&r, (uint32_t)rx->wire_len);
        mcutl_buf_put_str(&r, " wire bytes overflows rx buffer of ");
        mcutl_buf_put_dec(&r, (uint32_t)rx->cap);
        mcutl_buf_put_str(&r, " bytes (max payload ");
        mcutl_buf_put_dec(&r, (uint32_t)MCUTL_PROTO_MAX_PAYLOAD);
        mcutl_buf_put_str(&r, ")");
    } else {
        mcutl_buf_put_str(&r, "bad cobs: delimiter after ");
        mcutl_buf_put_dec(&r, (uint32_t)rx->wire_len);
        mcutl_buf_put_str(&r, " wire bytes, ");
        mcutl_buf_put_dec(&r, rx->left);
        mcutl_buf_put_str(&r, " bytes short of the group end");
    }
    return send_error(srv, rx->err, type, seq, r.len);
}

static int on_frame(mcutl_server_t *srv)
{
    mcutl_frame_t f;
    mcutl_buf_t r;
    mcutl_buf_t resp;
    mcutl_handler_fn fn;
    mcutl_err_t err;
    uint8_t type;
    uint16_t seq;
    int rc;

    reason_init(srv, &r);
    err = mcutl_frame_decode(srv->rx.buf, srv->rx.len, &f, &r);
    if (err != MCUTL_OK) {
        peek_header(&srv->rx, &type, &seq);
        return send_error(srv, err, type, seq, r.len);
    }
    fn = find_handler(srv, f.type);
    if (fn == NULL) {
        mcutl_buf_put_str(&r, "no handler for type ");
        mcutl_buf_put_hex(&r, f.type, 2u);
        return send_error(srv, MCUTL_ERR_UNKNOWN_TYPE, f.type, f.seq, r.len);
    }

    srv->n_requests++;
    mcutl_buf_init(&resp, tx_payload(srv), MCUTL_PROTO_MAX_PAYLOAD);
    err = fn(srv, f.payload, f.len, &resp);
    if (err != MCUTL_OK) {
        /* reason text is at payload[0..len): shift it behind code|type */
        size_t n = resp.len > MCUTL_PROTO_MAX_PAYLOAD - 2u ? MCUTL_PROTO_MAX_PAYLOAD - 2u
                                                           : resp.len;
        memmove(tx_payload(srv) + 2, tx_payload(srv), n);
        r.len = n;
        if (n == 0u) {
            mcutl_buf_put_str(&r, "handler for type ");
            mcutl_buf_put_hex(&r, f.type, 2u);
            mcutl_buf_put_str(&r, " rejected the request");
        }
        return send_error(srv, err, f.type, f.seq, r.len);
    }
    if (resp.overflow) {
        mcutl_buf_put_str(&r, "handler for type ");
        mcutl_buf_put_hex(&r, f.type, 2u);
        mcutl_buf_put_str(&r, " overflowed the response buffer (max payload ");
        mcutl_buf_put_dec(&r, (uint32_t)MCUTL_PROTO_MAX_PAYLOAD);
        mcutl_buf_put_str(&r, ")");
        return send_error(srv, MCUTL_ERR_INTERNAL, f.type, f.seq, r.len);
    }

    rc = send_frame(srv, (uint8_t)(f.type | MCUTL_MSG_RESPONSE_BIT), f.seq, resp.len);
    if (f.type == MCUTL_MSG_EXIT) {
        /* only reached when handle_exit accepted: cfg->exit != NULL */
        uint8_t code = f.payload[0];

        if (srv->io.flush != NULL) {
            srv->io.flush(srv->io.ctx);
        }
        srv->cfg->exit(srv->cfg->user, code);
        return rc == MCUTL_EV_RESPONSE ? MCUTL_EV_EXIT : rc;
    }
    return rc;
}

void mcutl_server_init(mcutl_server_t *srv, const mcutl_server_config_t *cfg,
                       const mcutl_io_t *io)
{
    memset(srv, 0, sizeof(*srv));
    srv->cfg = cfg;
    srv->io = *io;
    mcutl_rx_init(&srv->rx, srv->rx_buf, sizeof(srv->rx_buf));
}

int mcutl_server_feed_byte(mcutl_server_t *srv, uint8_t byte)
{
    switch (mcutl_rx_push(&srv->rx, byte)) {
    case MCUTL_RX_FRAME:
        return on_frame(srv);
    case MCUTL_RX_ERROR:
        return on_rx_error(srv);
    default:
        return MCUTL_EV_NONE;
    }
}
