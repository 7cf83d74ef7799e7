/*
 * train.h - the C ABI of a generated training firmware (train.c from `mcutl compile
 * --method repnet`). The serial handlers use it; an application that trains from its
 * own sensor loop can call it directly instead.
 *
 * One sample at a time: write the int8 input (NHWC, the backbone's input quantisation)
 * into mcutl_train_input(), set its label, then run a step. Gradients accumulate over
 * steps until one is run with update != 0 (mini-batches by gradient accumulation).
 * Nothing here allocates; every buffer is in the static arena or static arrays.
 */
#ifndef MCUTL_TRAIN_H
#define MCUTL_TRAIN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The input buffer inside the arena (mcutl_train_input_bytes() bytes of int8 NHWC). */
int8_t *mcutl_train_input(void);

/** Size of the input in bytes. */
uint32_t mcutl_train_input_bytes(void);

/** Label of the current sample, 0 .. num_classes - 1. */
void mcutl_train_set_label(int32_t label);

/**
 * Forward + loss + backward on the current sample (gradients accumulate), then, if
 * @p update != 0, the optimizer over all parameters (which zeroes the gradients).
 * @param[out] loss  softmax cross-entropy of the sample (before the update)
 * @return 0, or 1 + the index of the kernel call that rejected its arguments
 */
int mcutl_train_step(float *loss, int update);

/**
 * Forward pass only; writes num_classes float32 logits.
 * @return 0, or 1 + the index of the kernel call that rejected its arguments
 */
int mcutl_infer(float *logits);

/** Back to the initial parameters; zero gradients and optimizer state. */
void mcutl_train_reset(void);

#ifdef __cplusplus
}
#endif

#endif /* MCUTL_TRAIN_H */
