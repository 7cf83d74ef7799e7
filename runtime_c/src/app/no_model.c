/*
 * no_model.c - the application description of a firmware without a model.
 *
 * Test builds (-DMCUTL_TEST_FAULT=1) add one request, MCUTL_MSG_TEST_FAULT,
 * that executes an undefined instruction, to prove that a fault reaches the
 * host as a FAULT frame and a non-zero exit.
 */
#include "mcutl/app.h"

#if defined(MCUTL_TEST_FAULT) && MCUTL_TEST_FAULT
#define MCUTL_MSG_TEST_FAULT 0x70u

static mcutl_err_t test_fault(mcutl_server_t *srv, const uint8_t *req, size_t req_len,
                              mcutl_buf_t *resp)
{
    (void)srv;
    (void)req;
    (void)req_len;
    (void)resp;
    __asm__ volatile("udf #7");
    return MCUTL_OK;
}

static const mcutl_handler_t handlers[] = {{MCUTL_MSG_TEST_FAULT, test_fault}};
const mcutl_app_t mcutl_app = {0u, NULL, handlers, 1u, NULL};
#else
const mcutl_app_t mcutl_app = {0u, NULL, NULL, 0u, NULL};
#endif
