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

/* Outcome bits of mcutl_train_step / mcutl_train_update. */
#define MCUTL_TRAIN_UPDATED 1u         /**< the optimizer ran */
#define MCUTL_TRAIN_SAMPLE_REJECTED 2u /**< loss not finite or above the build's bound:
                                            no gradient from this sample */
#define MCUTL_TRAIN_UPDATE_REJECTED 4u /**< the update would have made a parameter or an
                                            optimizer value non-finite: not applied, the
                                            gradients dropped */

/**
 * Forward + loss + backward on the current sample (gradients accumulate), then, if
 * @p update != 0, the optimizer over all parameters (which zeroes the gradients).
 * Guarded: a loss that is not finite or above the bound adds no gradient; an update
 * with no gradient since the last one (every sample rejected) does nothing, and one that
 * would make a value non-finite is not applied (parameters unchanged).
 * @param[out] loss     softmax cross-entropy of the sample (before the update)
 * @param[out] outcome  MCUTL_TRAIN_* bits
 * @return 0, or 1 + the index of the kernel call that rejected its arguments
 */
int mcutl_train_step(float *loss, int update, uint32_t *outcome);

/**
 * The optimizer alone (the end of a mini-batch whose last sample ran without update).
 * Nothing happens when no sample added a gradient since the last update (all rejected).
 * @return MCUTL_TRAIN_UPDATED, MCUTL_TRAIN_UPDATE_REJECTED, or 0 (nothing to apply)
 */
uint32_t mcutl_train_update(void);

/* Learning-rate schedules (mcutl_train_config_t.schedule); t = updates applied so far. */
#define MCUTL_SCHEDULE_CONSTANT 0u /**< lr */
#define MCUTL_SCHEDULE_STEP 1u     /**< lr x gamma^(t / period) */
#define MCUTL_SCHEDULE_COSINE 2u   /**< lr x (gamma + (1 - gamma) (1 + cos(pi min(t, period)
                                        / period)) / 2) */

/**
 * The training recipe, settable at run time (mcutl_train_configure, or CONFIG over the
 * link); the build's options are the defaults, and RESET restores them. A checkpoint
 * keeps it. Each update: the mini-batch's gradient (averaged over its samples unless
 * average is 0), scaled down to clip_norm if its L2 norm is larger, then the optimizer
 * with the scheduled learning rate (warm-up: x (t + 1) / warmup for t < warmup).
 */
typedef struct {
    float lr;           /**< base learning rate, > 0 */
    float momentum;     /**< SGD momentum in [0, 1) (Adam keeps its compile-time betas) */
    float weight_decay; /**< L2 coefficient added to the gradient, >= 0 */
    uint32_t schedule;  /**< MCUTL_SCHEDULE_* */
    uint32_t warmup;    /**< updates of linear warm-up (0: none) */
    uint32_t period;    /**< step: updates between decays; cosine: updates to decay over (>= 1) */
    float gamma;        /**< step: the decay factor; cosine: the final fraction of lr; [0, 1] */
    float clip_norm;    /**< 0: no clipping; else the gradient's L2 norm is at most this */
    uint32_t average;   /**< 1: the mean of the mini-batch's gradients; 0: their sum */
} mcutl_train_config_t;

/** Set the recipe. @return 0, or -1 if a field is out of range (nothing changed). */
int mcutl_train_configure(const mcutl_train_config_t *config);

/** The recipe in force. */
void mcutl_train_get_config(mcutl_train_config_t *config);

/** Training counters since the last reset. */
typedef struct {
    uint32_t steps;             /**< samples trained on (their gradient accumulated) */
    uint32_t updates;           /**< optimizer updates applied */
    uint32_t rejected_samples;  /**< samples whose loss failed the guard */
    uint32_t rejected_updates;  /**< updates not applied (non-finite) */
    uint32_t rejected_in_a_row; /**< rejections since the last applied update */
} mcutl_train_counters_t;

void mcutl_train_get_counters(mcutl_train_counters_t *counters);

/**
 * Forward pass only; writes num_classes float32 logits.
 * @return 0, or 1 + the index of the kernel call that rejected its arguments
 */
int mcutl_infer(float *logits);

/**
 * Save the learned state (parameters, optimizer state, counters) as a checkpoint in the
 * firmware's store; the last save survives a reset or a power cut (mcutl/checkpoint.h).
 * @return MCUTL_CKPT_OK or another MCUTL_CKPT_* status
 */
int mcutl_train_save(void);

/**
 * Load the newest valid checkpoint of this model (the serial firmware does this at
 * boot; call it after mcutl_train_reset() in your own firmware).
 * @return MCUTL_CKPT_OK, MCUTL_CKPT_NONE (nothing saved yet) or another status
 */
int mcutl_train_load(void);

/** Back to the initial parameters; zero gradients, optimizer state and counters. */
void mcutl_train_reset(void);

#ifdef __cplusplus
}
#endif

#endif /* MCUTL_TRAIN_H */
