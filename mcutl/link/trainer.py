"""Host side of the training messages: SAMPLE, STEP, INFER, GET/SET params, DIGEST, STATS,
RESET, PROBE (payload layouts: docs/protocol.md and the generated train.c)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from mcutl.errors import McutlError
from mcutl.link import protocol as proto
from mcutl.link.client import Device
from mcutl.train.recipe import Recipe

PARAMS, GRADS, OPT_STATE = 0, 1, 2
FLAG_UPDATE = 1  # apply the optimizer after this sample
FLAG_UPDATE_ONLY = 2  # apply the optimizer, no sample
# STEP outcome bits (runtime_c/include/mcutl/train.h)
UPDATED = 1  # the optimizer ran
SAMPLE_REJECTED = 2  # loss not finite or above the build's max_loss: no gradient
UPDATE_REJECTED = 4  # the update would have made a value non-finite: not applied


@dataclass(frozen=True)
class StepResult:
    loss: float
    loss_bits: int  # the float32's bits, for bit-identical comparisons
    steps: int
    ticks: int
    outcome: int  # UPDATED | SAMPLE_REJECTED | UPDATE_REJECTED bits
    lr: float = 0.0  # the learning rate of the last update (the schedule's)
    scale: float = 0.0  # the factor its gradient was scaled by (mean, clipping)

    @property
    def updated(self) -> bool:
        return bool(self.outcome & UPDATED)

    @property
    def sample_rejected(self) -> bool:
        return bool(self.outcome & SAMPLE_REJECTED)

    @property
    def update_rejected(self) -> bool:
        return bool(self.outcome & UPDATE_REJECTED)

    @property
    def rejected(self) -> bool:
        return bool(self.outcome & (SAMPLE_REJECTED | UPDATE_REJECTED))


@dataclass(frozen=True)
class Digest:
    crc32: int
    param_bytes: int
    steps: int
    updates: int


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    updates: int
    state_bytes: int  # parameters and optimizer state


@dataclass(frozen=True)
class Stats:
    steps: int
    updates: int
    last_step_ticks: int
    stack_unused: int
    arena_bytes: int
    rx_dropped: int
    rejected_samples: int  # samples whose loss failed the guard (no gradient)
    rejected_updates: int  # updates not applied (they would have been non-finite)
    rejected_in_a_row: int  # rejections since the last applied update
    checkpoint_seq: int  # the checkpoint loaded at boot or saved last (0: none)
    checkpoint_updates: int  # updates the state had at that checkpoint
    save_errors: int  # saves that failed


class TrainDevice:
    """A training firmware reached through a Device (QEMU, board or host process)."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.chunk = 0  # payload bytes per chunk; 0: follow the link (Device.payload())
        self._step_id = 0

    def _max_chunk(self) -> int:
        """Payload bytes of one chunk of a SAMPLE / GET_PARAMS / SET_PARAMS / PROBE
        transfer: ``chunk`` if set, else what the link suggests now (smaller after
        damage), less the request's own header."""
        if self.chunk:
            return self.chunk
        return max(16, self.device.payload() - 16)

    def sample(self, x_q: np.ndarray, label: int) -> None:
        """Send one int8 NHWC sample and its label (chunked to the payload size)."""
        data = np.ascontiguousarray(x_q, dtype=np.int8).tobytes()
        n = self._max_chunk()
        for off in range(0, len(data), n):
            self.device.request(proto.MsgType.SAMPLE,
                                struct.pack("<iI", int(label), off) + data[off: off + n])

    def step(self, update: bool = True, update_only: bool = False) -> StepResult:
        self._step_id = (self._step_id + 1) & 0xFFFFFFFF
        flags = (FLAG_UPDATE if update else 0) | (FLAG_UPDATE_ONLY if update_only else 0)
        resp = self.device.request(proto.MsgType.STEP, struct.pack("<IB", self._step_id, flags))
        loss_bits, steps, ticks, outcome = struct.unpack("<IIIB", resp[:13])
        (loss,) = struct.unpack("<f", struct.pack("<I", loss_bits))
        lr, scale = struct.unpack("<ff", resp[13:21]) if len(resp) >= 21 else (0.0, 0.0)
        return StepResult(loss, loss_bits, steps, ticks, outcome, lr, scale)

    def configure(self, recipe: Recipe | None = None) -> Recipe:
        """CONFIG: set the recipe (None: only read it); the recipe in force."""
        payload = recipe.pack() if recipe is not None else b""
        return Recipe.unpack(self.device.request(proto.MsgType.CONFIG, payload))

    def infer(self, num_classes: int) -> np.ndarray:
        resp = self.device.request(proto.MsgType.INFER)
        return np.frombuffer(resp[: 4 * num_classes], dtype="<f4").astype(np.float32)

    def get_block(self, which: int, count: int, start: int = 0) -> np.ndarray:
        """``count`` floats of block ``which`` from float index ``start``."""
        out = bytearray()
        total = 4 * count
        n = (self._max_chunk() // 4) * 4
        while len(out) < total:
            k = min(n, total - len(out))
            out += self.device.request(proto.MsgType.GET_PARAMS,
                                       struct.pack("<BIH", which, 4 * start + len(out), k))
        return np.frombuffer(bytes(out), dtype="<f4").astype(np.float32)

    def set_block(self, which: int, values: np.ndarray) -> None:
        data = np.ascontiguousarray(values, dtype="<f4").tobytes()
        n = (self._max_chunk() // 4) * 4
        for off in range(0, len(data), n):
            self.device.request(proto.MsgType.SET_PARAMS,
                                struct.pack("<BI", which, off) + data[off: off + n])

    def digest(self) -> Digest:
        crc, nbytes, steps, updates = struct.unpack(
            "<IIII", self.device.request(proto.MsgType.DIGEST)[:16])
        return Digest(crc, nbytes, steps, updates)

    def stats(self) -> Stats:
        resp = self.device.request(proto.MsgType.STATS)
        if len(resp) < 48:
            raise McutlError(f"the device's STATS answer has {len(resp)} bytes where this mcutl "
                             "reads 48: its firmware was built by an older mcutl; compile the "
                             "build again (and flash it)")
        return Stats(*struct.unpack("<12I", resp[:48]))

    def save(self) -> Checkpoint:
        """SAVE: the learned state as a new checkpoint in the device's store."""
        seq, updates, nbytes = struct.unpack(
            "<III", self.device.request(proto.MsgType.SAVE)[:12])
        return Checkpoint(seq, updates, nbytes)

    def load(self) -> tuple[int, int, int]:
        """LOAD: the newest valid checkpoint (seq, steps, updates); DeviceError with
        BAD_STATE when there is none."""
        seq, steps, updates = struct.unpack("<III", self.device.request(proto.MsgType.LOAD)[:12])
        return seq, steps, updates

    def reset(self) -> None:
        self.device.request(proto.MsgType.RESET)

    def probe_crc(self, point: int) -> tuple[int, int]:
        """(CRC-32, bytes) of probe point ``point``'s int8 tensor after a forward pass on
        the current sample (the step's parameters, nothing updated)."""
        crc, nbytes = struct.unpack("<II", self.device.request(
            proto.MsgType.PROBE, struct.pack("<BIH", point, 0, 0))[:8])
        return crc, nbytes

    def probe(self, point: int) -> np.ndarray:
        """The int8 values of probe point ``point`` (chunked; each chunk reruns the forward
        pass, which is deterministic)."""
        _, total = self.probe_crc(point)
        out = bytearray()
        n = self._max_chunk() - 8
        while len(out) < total:
            k = min(n, total - len(out))
            resp = self.device.request(proto.MsgType.PROBE,
                                       struct.pack("<BIH", point, len(out), k))
            out += resp[8: 8 + k]
        return np.frombuffer(bytes(out), dtype=np.int8).copy()


def params_crc(values: np.ndarray) -> int:
    """The DIGEST of a parameter block computed on the host (zlib CRC-32 of float32 LE)."""
    return zlib.crc32(np.ascontiguousarray(values, dtype="<f4").tobytes())
