/*
 * board_host.c - the native "board": the serial link is stdin/stdout (binary),
 * diagnostics go to stderr. Used for fast tests and as the bit-exact host
 * reference of the generated C.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "mcutl/board.h"
#include "target_config.h"

void mcutl_board_init(void)
{
}

int mcutl_board_getc(void)
{
    unsigned char b;
    for (;;) {
        ssize_t n = read(STDIN_FILENO, &b, 1);
        if (n == 1) {
            return b;
        }
        if (n == 0 || errno != EINTR) {
            /* The host closed the link: nothing more will arrive. */
            exit(0);
        }
    }
}

void mcutl_board_write(const uint8_t *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, buf, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            exit(3);
        }
        buf += w;
        n -= (size_t)w;
    }
}

void mcutl_board_log(const char *msg)
{
    fputs(msg, stderr);
}

uint32_t mcutl_board_rx_dropped(void)
{
    return 0;
}

uint32_t mcutl_board_stack_unused(void)
{
    return 0;
}

uint32_t mcutl_board_ticks(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

void mcutl_board_exit(int code)
{
    exit(code);
}
