/*
 * app.h - what a firmware image adds to the generic serial application.
 *
 * The application (runtime_c/src/app/main.c) owns the board, the serial
 * server and the HELLO answer. A compiled model (generated model.c) supplies
 * one `mcutl_app` describing itself and the request handlers it serves
 * (RUN, later SAMPLE/STEP/INFER/...). Firmware without a model links
 * runtime_c/src/app/no_model.c instead.
 */
#ifndef MCUTL_APP_H
#define MCUTL_APP_H

#include <stddef.h>
#include <stdint.h>

#include "mcutl/proto.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint32_t arena_bytes;             /**< size of the model's static arena (HELLO) */
    const uint8_t *model_hash;        /**< MCUTL_MODEL_HASH_SIZE bytes, NULL if no model */
    const mcutl_handler_t *handlers;  /**< request handlers the model serves */
    size_t n_handlers;
    void (*init)(void);               /**< called once before the first request, or NULL */
} mcutl_app_t;

/** Defined exactly once per firmware: by the generated model, or by no_model.c. */
extern const mcutl_app_t mcutl_app;

/**
 * Unsolicited frame the fault hook sends before the firmware stops (seq 0xFFFF):
 * payload = the nine u32 fields of mcutl_fault_info_t, little-endian, in order.
 */
#define MCUTL_MSG_FAULT 0x7Eu

#ifdef __cplusplus
}
#endif

#endif /* MCUTL_APP_H */
