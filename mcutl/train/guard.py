"""The training guard on the host: the device's rules (generated train.c) mirrored for a
PyTorch reference, and the stop after too many rejected steps in a row.

Device rules: a sample whose loss is not finite or above ``max_loss`` adds no gradient;
an update that would make a parameter or an optimizer value non-finite is not applied
(its gradients are dropped). Rejections since the last applied update are counted.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mcutl.errors import McutlError

if TYPE_CHECKING:  # torch is imported when a reference steps (the CLI starts without it)
    import torch

#: `mcutl train` / `verify` stop after this many rejections in a row (no update between).
DEFAULT_MAX_REJECTED = 10


class TrainingDivergedError(McutlError):
    """The device rejected too many steps in a row: the training has diverged."""


def loss_ok(loss: float, max_loss: float) -> bool:
    """The device's loss guard: false for NaN, +inf and losses above the bound."""
    return bool(loss <= max_loss)


def _finite(t: torch.Tensor) -> bool:
    return bool(t.isfinite().all())


def guarded_step(opt: torch.optim.Optimizer) -> bool:
    """``opt.step()`` unless it would make a parameter or an optimizer value non-finite
    (then everything is put back as it was). True if the step was applied."""
    params = [p for group in opt.param_groups for p in group["params"]]
    saved = [p.detach().clone() for p in params]
    state = copy.deepcopy(opt.state_dict())
    opt.step()
    import torch

    ok = all(_finite(p.detach()) for p in params) and all(
        _finite(v) for s in opt.state.values() for v in s.values()
        if isinstance(v, torch.Tensor) and v.is_floating_point())
    if not ok:
        with torch.no_grad():
            for p, old in zip(params, saved, strict=True):
                p.copy_(old)
        opt.load_state_dict(state)
    return ok


@dataclass
class RejectionCounter:
    """Rejections since the last applied update, as the device counts them; raises
    TrainingDivergedError when ``limit`` are reached (0: never)."""

    limit: int = DEFAULT_MAX_REJECTED
    in_a_row: int = 0
    samples: int = 0
    updates: int = 0
    last_loss: float = math.nan

    def sample_rejected(self, loss: float) -> None:
        self.samples += 1
        self.last_loss = loss
        self._bump()

    def update_rejected(self) -> None:
        self.updates += 1
        self._bump()

    def update_applied(self) -> None:
        self.in_a_row = 0

    def _bump(self) -> None:
        self.in_a_row += 1
        if self.limit and self.in_a_row >= self.limit:
            raise TrainingDivergedError(self.message())

    def message(self) -> str:
        return (f"training diverged: the device rejected {self.in_a_row} steps in a row "
                f"({self.samples} samples whose loss was not finite or above the build's "
                f"max_loss, last {self.last_loss:.3g}; {self.updates} updates that would "
                "have made a parameter non-finite); its parameters are those of the last "
                "applied update. Lower the learning rate (`mcutl compile --lr`), or raise "
                "`--max-rejected` / the build's `--max-loss` if the losses are expected")
