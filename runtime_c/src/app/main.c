/*
 * main.c - the firmware's application: bring up the board, then answer
 * protocol requests forever (HELLO, ECHO, EXIT built in; the model's
 * handlers from mcutl_app).
 */
#include <stdint.h>

#include "mcutl/app.h"
#include "mcutl/board.h"
#include "mcutl/fault.h"
#include "mcutl/proto.h"
#include "target_config.h"

/* Static, not on the stack: about 2 KiB of frame buffers. */
static mcutl_server_t server;

static int link_write(void *ctx, const uint8_t *buf, size_t n)
{
    (void)ctx;
    mcutl_board_write(buf, n);
    return 0;
}

static void app_exit(void *user, uint8_t code)
{
    (void)user;
    mcutl_board_exit(code);
}

static void put_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Tell the host why the device stopped (the host reports it with the registers). */
void mcutl_fault_hook(const mcutl_fault_info_t *info)
{
    static uint8_t payload[9u * 4u];
    static uint8_t wire[MCUTL_COBS_MAX_ENCODED(sizeof payload + MCUTL_PROTO_OVERHEAD) + 1u];
    const uint32_t fields[9] = {info->exception, info->pc,    info->lr,
                                info->psr,       info->cfsr,  info->hfsr,
                                info->mmfar,     info->bfar,  info->sp};
    for (unsigned i = 0; i < 9u; i++) {
        put_u32le(payload + 4u * i, fields[i]);
    }
    size_t n = mcutl_frame_encode(MCUTL_MSG_FAULT, 0xFFFFu, payload, sizeof payload, wire,
                                  sizeof wire);
    mcutl_board_write(wire, n);
}

int main(void)
{
    static mcutl_server_config_t cfg; /* must outlive the server */
    const mcutl_io_t io = {link_write, NULL, NULL};

    cfg.target = MCUTL_TARGET_NAME;
    cfg.build_id = MCUTL_BUILD_ID;
    cfg.arena_bytes = mcutl_app.arena_bytes;
    cfg.model_hash = mcutl_app.model_hash;
    cfg.handlers = mcutl_app.handlers;
    cfg.n_handlers = mcutl_app.n_handlers;
    cfg.exit = app_exit;

    if (mcutl_app.init != NULL) {
        mcutl_app.init();
    }
    mcutl_board_init();
    mcutl_server_init(&server, &cfg, &io);
    for (;;) {
        (void)mcutl_server_feed_byte(&server, (uint8_t)mcutl_board_getc());
    }
}
