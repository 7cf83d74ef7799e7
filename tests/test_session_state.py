"""The device checks the session's state: a frame with a valid CRC that comes out of order
(STEP before a whole SAMPLE, a sample trained on twice, a chunk that leaves a gap, RUN on
a stale input, a STEP id replayed after RESET) is answered with a BAD_STATE ERROR that
says why, and nothing is trained or run."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.backbones import TinyIMU1D, randomize_batchnorm_stats, spread_init
from mcutl.compile import BuildInfo, compile_backbone, compile_training
from mcutl.link import protocol as proto
from mcutl.link.session import Session, open_session
from mcutl.link.trainer import TrainDevice
from mcutl.targets import load_target
from mcutl.train.codegen import TrainOptions

pytestmark = pytest.mark.host

T = proto.MsgType
INPUT_BYTES = 600  # TinyIMU1D: 6 x 100 int8


def _model() -> torch.nn.Module:
    torch.set_num_threads(1)
    return randomize_batchnorm_stats(spread_init(TinyIMU1D(seed=7))).eval()


def _calib() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((16, 6, 100), dtype=np.float32)


@pytest.fixture(scope="module")
def train_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("state-train")
    compile_training(_model(), "host", out, num_classes=3, calib=_calib(),
                     input_shape=(1, 6, 100), options=TrainOptions(lr=0.01))
    return out


@pytest.fixture(scope="module")
def infer_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("state-infer")
    compile_backbone(_model(), "host", out, calib=_calib(), input_shape=(1, 6, 100))
    return out


def _open(build: Path) -> Iterator[Session]:
    fw = build / BuildInfo.load(build).firmware["host"]
    with open_session(load_target("host"), fw) as s:
        yield s
        s.finish(0)


@pytest.fixture
def dev(train_build: Path) -> Iterator[TrainDevice]:
    for s in _open(train_build):
        d = TrainDevice(s.device)
        d.reset()
        yield d


def _bad_state(d: TrainDevice | Session, msg: int, payload: bytes, *words: str) -> None:
    device = d.device
    with pytest.raises(proto.DeviceError) as info:
        device.request(msg, payload)
    assert info.value.code == proto.ErrorCode.BAD_STATE, info.value
    for w in words:
        assert w in info.value.reason, info.value.reason


def _sample(label: int, offset: int, data: bytes) -> bytes:
    return struct.pack("<iI", label, offset) + data


def _step(step_id: int, flags: int = 1) -> bytes:
    return struct.pack("<IB", step_id, flags)


X = bytes(np.random.default_rng(1).integers(-128, 128, INPUT_BYTES, dtype=np.int64)
          .astype(np.int8).tobytes())


def test_step_before_any_sample(dev: TrainDevice) -> None:
    _bad_state(dev, T.STEP, _step(1), "STEP needs a whole SAMPLE", "received in order: 0")
    assert dev.stats().steps == 0


def test_step_after_a_partial_sample(dev: TrainDevice) -> None:
    dev.device.request(T.SAMPLE, _sample(1, 0, X[:300]))
    _bad_state(dev, T.STEP, _step(1), "received in order: 300")
    _bad_state(dev, T.INFER, b"", "INFER needs a whole SAMPLE")
    dev.device.request(T.SAMPLE, _sample(1, 300, X[300:]))
    assert dev.step().steps == 1


def test_chunk_that_leaves_a_gap(dev: TrainDevice) -> None:
    dev.device.request(T.SAMPLE, _sample(1, 0, X[:100]))
    _bad_state(dev, T.SAMPLE, _sample(1, 200, X[200:300]), "leaves a gap", "order: 100")
    # a resent chunk (starting inside what was received) is fine
    dev.device.request(T.SAMPLE, _sample(1, 50, X[50:150]))
    _bad_state(dev, T.STEP, _step(1), "received in order: 150")


def test_label_changed_within_a_sample(dev: TrainDevice) -> None:
    dev.device.request(T.SAMPLE, _sample(1, 0, X[:300]))
    _bad_state(dev, T.SAMPLE, _sample(2, 300, X[300:]), "label changed", "it was 1")


def test_a_sample_is_trained_on_once(dev: TrainDevice) -> None:
    x = np.frombuffer(X, np.int8)
    dev.sample(x, 0)
    first = dev.step()
    assert first.steps == 1
    _bad_state(dev, T.STEP, _step(99), "already trained on")
    # a retransmission of the same STEP id is answered from the cache, not refused
    again = dev.device.request(T.STEP, _step(dev._step_id))
    assert struct.unpack_from("<I", again)[0] == first.loss_bits
    # the optimizer alone needs no sample; INFER may read a used sample
    dev.step(update_only=True)
    assert dev.infer(3).shape == (3,)
    assert dev.stats().steps == 1


def test_step_id_replayed_after_reset_trains_again(dev: TrainDevice) -> None:
    x = np.frombuffer(X, np.int8)
    dev.sample(x, 0)
    dev.device.request(T.STEP, _step(7))
    trained = dev.digest().crc32
    dev.reset()
    fresh = dev.digest().crc32
    assert fresh != trained
    dev.sample(x, 0)
    resp = dev.device.request(T.STEP, _step(7))  # same id: must train, not answer a cache
    assert struct.unpack_from("<I", resp, 4)[0] == 1  # steps since the reset
    assert dev.digest().crc32 == trained  # the same sample from the same start


def test_reset_forgets_the_sample(dev: TrainDevice) -> None:
    dev.sample(np.frombuffer(X, np.int8), 0)
    dev.reset()
    _bad_state(dev, T.STEP, _step(5), "received in order: 0")


def test_probe_needs_a_sample(dev: TrainDevice) -> None:
    _bad_state(dev, T.PROBE, struct.pack("<BIH", 0, 0, 0), "PROBE needs a whole SAMPLE")


def test_run_on_a_stale_or_partial_input(infer_build: Path) -> None:
    for s in _open(infer_build):
        half = struct.pack("<I", 300) + X[300:]
        _bad_state(s, T.RUN, half, "leaves a gap", "order: 0")
        whole = s.device.request(T.RUN, struct.pack("<I", 0) + X)
        assert len(whole) > 4  # ticks + output
        # the last chunk alone would run on the previous input's bytes: refused
        _bad_state(s, T.RUN, half, "leaves a gap", "order: 0")
        assert s.device.request(T.RUN, struct.pack("<I", 0) + X[:300]) == b""
        again = s.device.request(T.RUN, half)
        assert again[4:] == whole[4:]  # same input, same output
