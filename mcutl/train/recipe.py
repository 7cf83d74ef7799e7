"""The training recipe the device runs (train.h `mcutl_train_config_t`, the CONFIG request):
learning-rate schedule with warm-up, the mean or the sum of a mini-batch's gradients,
clipping of their norm. The host's side: its wire form and what the device must compute
from it (`verify` checks the learning rate and gradient factor the device reports)."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from mcutl.errors import McutlError

SCHEDULES = ("constant", "step", "cosine")  # the codes of train.h MCUTL_SCHEDULE_*
_WIRE = "<fffIIIffI"  # the CONFIG payload: the fields of mcutl_train_config_t in order


@dataclass(frozen=True)
class Recipe:
    lr: float
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup: int = 0
    period: int = 1
    gamma: float = 0.1
    clip_norm: float = 0.0
    average: bool = True

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Recipe:
        """The build's defaults (build.json training options)."""
        return cls(lr=options["lr"], momentum=options["momentum"],
                   weight_decay=options["weight_decay"],
                   schedule=options.get("schedule", "constant"),
                   warmup=options.get("warmup", 0), period=options.get("period", 1),
                   gamma=options.get("gamma", 0.1), clip_norm=options.get("clip_norm", 0.0),
                   average=options.get("average", False))

    def check(self) -> None:
        ok = (math.isfinite(self.lr) and self.lr > 0 and 0 <= self.momentum < 1
              and 0 <= self.weight_decay < 3.4e38 and self.schedule in SCHEDULES
              and self.warmup >= 0 and self.period >= 1 and 0 <= self.gamma <= 1
              and 0 <= self.clip_norm < 3.4e38)
        if not ok:
            raise McutlError(f"training recipe out of range: {self}. Needed: lr > 0, "
                             "0 <= momentum < 1, weight decay >= 0, schedule one of "
                             f"{', '.join(SCHEDULES)}, warmup >= 0, period >= 1, "
                             "0 <= gamma <= 1, clip >= 0")

    def pack(self) -> bytes:
        self.check()
        return struct.pack(_WIRE, self.lr, self.momentum, self.weight_decay,
                           SCHEDULES.index(self.schedule), self.warmup, self.period,
                           self.gamma, self.clip_norm, int(self.average))

    @classmethod
    def unpack(cls, data: bytes) -> Recipe:
        lr, m, wd, sched, warm, period, gamma, clip, avg = struct.unpack(_WIRE, data[:36])
        return cls(lr, m, wd, SCHEDULES[min(sched, 2)], warm, period, gamma, clip, bool(avg))

    def lr_at(self, t: int) -> float:
        """The learning rate of update t (0, 1, ...), in float64."""
        lr = self.lr
        if self.schedule == "step":
            lr *= self.gamma ** (t // self.period)
        elif self.schedule == "cosine":
            u = min(t, self.period) / self.period
            lr *= self.gamma + (1 - self.gamma) * 0.5 * (1 + math.cos(math.pi * u))
        if t < self.warmup:
            lr *= (t + 1) / self.warmup
        return lr

    def grad_scale(self, samples: int, grad_norm: float) -> float:
        """The factor of a mini-batch of ``samples`` whose summed gradient has L2 norm
        ``grad_norm``: 1/samples for the mean, then down to clip_norm."""
        scale = 1.0 / samples if self.average else 1.0
        norm = grad_norm * scale
        if self.clip_norm > 0 and math.isfinite(norm) and norm > self.clip_norm:
            scale *= self.clip_norm / norm
        return scale


# ---- what `mcutl train` does when it is not told ------------------------------------
# Chosen from the examples' tables (examples/image_transfer/results.md,
# examples/imu_personalization/results.md: every method trained this way): mini-batches
# of 8 (the mean of their gradients), a cosine decay of the learning rate to 0 over the
# run, and as many epochs as make DEFAULT_SAMPLES samples (one epoch of a larger set).
DEFAULT_BATCH = 8
DEFAULT_SAMPLES = 1600


def default_epochs(n_samples: int) -> int:
    """Epochs of an ``n_samples`` training set that make at least DEFAULT_SAMPLES samples."""
    return max(1, math.ceil(DEFAULT_SAMPLES / max(1, n_samples)))


def over_run(base: Recipe, total_updates: int) -> Recipe:
    """``base`` with the default schedule of a run of ``total_updates`` updates: a cosine
    decay to 0 over the run."""
    from dataclasses import replace

    return replace(base, schedule="cosine", period=max(1, total_updates), gamma=0.0)
