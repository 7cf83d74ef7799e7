/*
 * Native test device: runs the protocol server over stdin/stdout.
 *
 * Target name "host". Exits with the EXIT request's code, 0 on EOF of stdin,
 * 2 if stdout breaks. Extra test-only handlers (application range):
 *   0x40 COUNTERS -> u32 n_requests | u32 n_errors (server counters)
 *   0x41 REJECT   -> always MCUTL_ERR_BAD_PAYLOAD with a reason
 *   0x42 OVERFLOW -> writes MCUTL_PROTO_MAX_PAYLOAD + 1 bytes (-> INTERNAL)
 *   0x43 APPERR   -> always application error 0x80 with no reason text
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "mcutl/proto.h"

#ifndef HOST_BUILD_ID
#define HOST_BUILD_ID "host-test"
#endif
#define HOST_ARENA_BYTES 65536u

static int host_write(void *ctx, const uint8_t *buf, size_t n)
{
    (void)ctx;
    while (n > 0u) {
        ssize_t w = write(STDOUT_FILENO, buf, n);

        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

static void host_exit(void *user, uint8_t code)
{
    (void)user;
    exit(code);
}

static mcutl_err_t handle_counters(mcutl_server_t *srv, const uint8_t *req, size_t req_len,
                                   mcutl_buf_t *resp)
{
    (void)req;
    (void)req_len;
    mcutl_buf_put_u32le(resp, srv->n_requests);
    mcutl_buf_put_u32le(resp, srv->n_errors);
    return MCUTL_OK;
}

static mcutl_err_t handle_reject(mcutl_server_t *srv, const uint8_t *req, size_t req_len,
                                 mcutl_buf_t *resp)
{
    (void)srv;
    (void)req;
    mcutl_buf_put(resp, "partial payload", 15u); /* must not leak into reply */
    resp->len = 0;
    mcutl_buf_put_str(resp, "test reject: got ");
    mcutl_buf_put_dec(resp, (uint32_t)req_len);
    mcutl_buf_put_str(resp, " bytes");
    return MCUTL_ERR_BAD_PAYLOAD;
}

static mcutl_err_t handle_overflow(mcutl_server_t *srv, const uint8_t *req, size_t req_len,
                                   mcutl_buf_t *resp)
{
    size_t i;

    (void)srv;
    (void)req;
    (void)req_len;
    for (i = 0; i < (size_t)MCUTL_PROTO_MAX_PAYLOAD + 1u; i++) {
        mcutl_buf_put_u8(resp, (uint8_t)i);
    }
    return MCUTL_OK;
}

static mcutl_err_t handle_apperr(mcutl_server_t *srv, const uint8_t *req, size_t req_len,
                                 mcutl_buf_t *resp)
{
    (void)srv;
    (void)req;
    (void)req_len;
    (void)resp;
    return MCUTL_ERR_APP_FIRST;
}

static const mcutl_handler_t host_handlers[] = {
    {0x40u, handle_counters},
    {0x41u, handle_reject},
    {0x42u, handle_overflow},
    {0x43u, handle_apperr},
};

static const mcutl_server_config_t host_cfg = {
    "host",
    HOST_BUILD_ID,
    HOST_ARENA_BYTES,
    NULL, /* no model */
    host_handlers,
    sizeof(host_handlers) / sizeof(host_handlers[0]),
    host_exit,
    NULL,
};

static mcutl_server_t server;

int main(void)
{
    static const mcutl_io_t io = {host_write, NULL, NULL};
    uint8_t buf[256];

    mcutl_server_init(&server, &host_cfg, &io);
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
        ssize_t i;

        if (n == 0) {
            return 0;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return 2;
        }
        for (i = 0; i < n; i++) {
            if (mcutl_server_feed_byte(&server, buf[i]) == MCUTL_EV_IO_ERROR) {
                return 2;
            }
        }
    }
}
