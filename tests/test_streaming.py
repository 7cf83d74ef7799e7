"""Row-streamed inference (mcutl/plan/streaming.py): the band geometry, the planner's
choice, and the streamed backbones bit-exact with tflite-runtime on the host build and in
QEMU, MobileNetV2-w0.35 @128 on stm32f405 included (issue 11: 245,760 B layer by layer,
which does not fit its 128 KB)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.backbones import TinyMBV2, randomize_batchnorm_stats, spread_init
from examples.mlperf_tiny import DSCNNKWS, MobileNetV2
from mcutl.compile import BuildInfo, compile_backbone, load_and_quantize
from mcutl.plan.lifetimes import plan_activations, streamed_bound
from mcutl.plan.streaming import choose_streams, conv_macs, make_stream, segment_ok
from mcutl.run import prepare_inputs, run_build
from mcutl.tflite.oracle import run_tflite_ref
from tests.conftest import needs_qemu


def _model(module: torch.nn.Module) -> torch.nn.Module:
    torch.set_num_threads(1)
    return randomize_batchnorm_stats(spread_init(module, seed=1), seed=2).eval()


def _calib(shape: tuple[int, ...], n: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape[1:]), dtype=np.float32)


def _tflite_ref(build: Path, x: np.ndarray) -> np.ndarray:
    tfl = (build / "model.tflite").read_bytes()
    q = prepare_inputs(BuildInfo.load(build), x)
    return np.concatenate([run_tflite_ref(tfl, [s[None]])[0] for s in q])


@pytest.fixture(scope="module")
def mbv2_graph():  # noqa: ANN201
    shape = (1, 1, 28, 28)
    return load_and_quantize(_model(TinyMBV2(seed=3)), _calib(shape), shape)


def test_bands_tile_the_output_and_read_the_receptive_field() -> None:
    # a stem (3x3/2, pad 1: 28 -> 14 rows), a 1x1 expansion, a 3x3/1 depthwise
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, 2, 1), torch.nn.ReLU(),
                                torch.nn.Conv2d(16, 32, 1), torch.nn.ReLU(),
                                torch.nn.Conv2d(32, 32, 3, 1, 1, groups=32)).eval()
    g = load_and_quantize(model, _calib((1, 1, 28, 28)), (1, 1, 28, 28))
    stem, expand, dw = g.nodes[0:3]
    assert segment_ok(g, 0, 2)
    s = make_stream(g, 0, 2, 3)
    rows = [b.out_rows for b in s.bands]
    assert rows == [(0, 3), (3, 6), (6, 9), (9, 12), (12, 14)]
    first, mid, last = s.bands[0], s.bands[1], s.bands[-1]
    # band 1: rows 0-3 of the expansion (the depthwise pads one row above: the map's own
    # padding), rows 0-3 of the stem's output, rows 0-7 of the input (the stem's pad)
    assert first.reads[(dw.name, dw.inputs[0])] == (0, 4)
    assert first.attrs[dw.name]["pad"][0::2] == (1, 0)
    assert first.reads[(expand.name, expand.inputs[0])] == (0, 4)
    assert first.reads[(stem.name, stem.inputs[0])] == (0, 8)
    assert first.attrs[stem.name]["pad"][0::2] == (1, 0)
    # an inner band has no padding: its halo rows are real rows of the map
    assert mid.reads[(dw.name, dw.inputs[0])] == (2, 7)
    assert mid.attrs[dw.name]["pad"][0::2] == (0, 0)
    assert mid.reads[(stem.name, stem.inputs[0])] == (3, 14)
    assert mid.attrs[stem.name]["pad"][0::2] == (0, 0)
    # the last band meets the bottom edge: the depthwise's own bottom padding returns
    assert last.reads[(dw.name, dw.inputs[0])] == (11, 14)
    assert last.attrs[dw.name]["pad"][0::2] == (0, 1)
    # band buffers: the most rows any band needs (5) of the 14x16 and 14x32 maps
    assert s.inner == {stem.outputs[0]: 5 * 14 * 16, expand.outputs[0]: 5 * 14 * 32}
    assert s.extra_macs > 0  # the halo rows are computed by two bands


def test_a_map_read_after_the_segment_stays_out_of_it(mbv2_graph) -> None:  # noqa: ANN001
    g = mbv2_graph
    # block 0 (nodes 1-4: expand, depthwise, project, add) adds the stem's output back:
    # a segment that makes that map must reach the add
    assert g.nodes[4].op == "add" and g.nodes[0].outputs[0] in g.nodes[4].inputs
    assert not segment_ok(g, 0, 3)
    assert segment_ok(g, 0, 4)
    assert segment_ok(g, 1, 3)  # the block alone: the stem's output is read whole


def test_auto_limits_the_recomputation_and_max_does_not(mbv2_graph) -> None:  # noqa: ANN001
    g = mbv2_graph
    layers = plan_activations(g)[0].arena_size()

    def bound(ss):  # noqa: ANN001, ANN202
        return streamed_bound(g, "portable", ss)

    budget = int(0.1 * conv_macs(g))
    auto = choose_streams(g, bound, budget)
    full = choose_streams(g, bound, None)
    a, f = (plan_activations(g, streams=ss)[0] for ss in (auto, full))
    assert sum(s.extra_macs for s in auto) <= budget < sum(s.extra_macs for s in full)
    assert f.arena_size() < a.arena_size() < layers
    for p in (a, f):
        p.check_no_overlap()
        assert p.arena_size() <= 1.02 * p.lower_bound()


@pytest.mark.tflite
@pytest.mark.parametrize("name", ["tinymbv2", "dscnn"])
def test_streamed_backbone_is_bit_exact_on_the_host(name: str, tmp_path: Path) -> None:
    """streaming "max": the smallest arena, many bands, residual adds inside segments
    (TinyMBV2), Keras' asymmetric 4/5-row stem padding at the band edges (DS-CNN)."""
    module, shape = {"tinymbv2": (TinyMBV2(seed=3), (1, 1, 28, 28)),
                     "dscnn": (DSCNNKWS(), (1, 1, 49, 10))}[name]
    model = _model(module)
    infos = {}
    for mode in ("off", "max"):
        infos[mode], gen, _ = compile_backbone(model, "stm32f405", tmp_path / mode,
                                               calib=_calib(shape), input_shape=shape,
                                               streaming=mode)
        plan = json.loads((tmp_path / mode / "plan.json").read_text())
        assert plan["schedule"]["kind"] == ("layer-by-layer" if mode == "off" else "row-streamed")
    assert infos["max"].arena_bytes < infos["off"].arena_bytes
    assert "band 1/" in (tmp_path / "max" / "model.c").read_text()
    x = _calib(shape, 40, seed=9)
    ref = _tflite_ref(tmp_path / "max", x)
    assert len({r.tobytes() for r in ref}) > 20  # the outputs depend on the input
    np.testing.assert_array_equal(run_build(tmp_path / "max", x).y, ref)
    np.testing.assert_array_equal(run_build(tmp_path / "off", x).y, ref)


@pytest.fixture(scope="module")
def mbv2_128(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shape = (1, 3, 128, 128)
    out = tmp_path_factory.mktemp("mbv2-128")
    compile_backbone(_model(MobileNetV2(0.35, 10)), "stm32f405", out, calib=_calib(shape, 4),
                     input_shape=shape, source_name="mobilenet_v2(width_mult=0.35)")
    return out


@pytest.mark.tflite
def test_mobilenetv2_035_at_128_fits_the_f405(mbv2_128: Path) -> None:
    plan = json.loads((mbv2_128 / "plan.json").read_text())
    assert plan["schedule"]["kind"] == "row-streamed"
    assert plan["total_bytes"] <= plan["sram_bytes"] == 131072
    assert plan["peak_bytes"] <= 1.02 * plan["lower_bound_bytes"]
    report = json.loads((mbv2_128 / "report.json").read_text())
    assert plan["peak_bytes"] < report["tflm_arena_bytes"]
    x = _calib((1, 3, 128, 128), 4, seed=5)
    ref = _tflite_ref(mbv2_128, x)
    assert len({r.tobytes() for r in ref}) == 4
    np.testing.assert_array_equal(run_build(mbv2_128, x).y, ref)


@needs_qemu
@pytest.mark.qemu
@pytest.mark.tflite
def test_mobilenetv2_035_at_128_in_qemu(mbv2_128: Path) -> None:
    """The F405 firmware (DSP kernels on the bands where their scratch fits) in QEMU."""
    x = _calib((1, 3, 128, 128), 2, seed=6)
    res = run_build(mbv2_128, x, qemu=True)
    np.testing.assert_array_equal(res.y, _tflite_ref(mbv2_128, x))


@pytest.fixture(scope="module")
def streamed_training(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """TinyMBV2 with Rep-Net on its last connector only: the backbone's forward up to it
    is frozen, so the step may stream it ("max"), or not ("off")."""
    from mcutl.compile import compile_training
    from mcutl.methods.repnet import RepNetSpec, find_connectors

    shape = (1, 1, 28, 28)
    model = _model(TinyMBV2(seed=3))
    g = load_and_quantize(model, _calib(shape, 32), shape)
    spec = RepNetSpec(stages=find_connectors(g)[-1:], first_pool=7)
    out = {}
    for mode in ("off", "max"):
        out[mode] = tmp_path_factory.mktemp(f"train-{mode}")
        compile_training(model, "stm32f405", out[mode], num_classes=4, calib=_calib(shape, 32),
                         input_shape=shape, spec=spec, streaming=mode)
    return out


@pytest.mark.host
def test_a_streamed_training_step_trains_bit_for_bit_the_same(streamed_training) -> None:  # noqa: ANN001
    from mcutl.verify.harness import verify

    plans = {m: json.loads((p / "plan.json").read_text()) for m, p in streamed_training.items()}
    assert plans["off"]["schedule"] == {"kind": "layer-by-layer"}
    segs = plans["max"]["schedule"]["segments"]
    assert segs and plans["max"]["peak_bytes"] < plans["off"]["peak_bytes"]
    assert "band 1/" in (streamed_training["max"] / "train.c").read_text()
    reps = {m: verify(p, steps=12, check_every=4) for m, p in streamed_training.items()}
    for rep in reps.values():
        assert rep.passed, rep.first_mismatch
    # the same losses and parameters, bit for bit: streaming changes where, not what
    assert [r.loss_device_bits for r in reps["max"].steps] == \
        [r.loss_device_bits for r in reps["off"].steps]
    assert [r.digest for r in reps["max"].steps] == [r.digest for r in reps["off"].steps]
    assert len({r.digest for r in reps["max"].steps}) >= 8  # it trains


@needs_qemu
@pytest.mark.qemu
def test_a_streamed_training_step_in_qemu(streamed_training) -> None:  # noqa: ANN001
    from mcutl.verify.harness import verify

    build = streamed_training["max"]
    host = verify(build, steps=10, check_every=1000)
    dev = verify(build, steps=10, check_every=5, qemu=True, against=host.steps)
    assert dev.passed, dev.first_mismatch
    assert [r.digest for r in dev.steps] == [r.digest for r in host.steps]


@pytest.fixture(scope="module")
def mbv2_128_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Issue 11's moonshot: MobileNetV2-w0.35 @128 with the memory-aware Rep-Net
    (benchmarks/train_fit.py) on the 128 KB F405."""
    from benchmarks.train_fit import build

    out = tmp_path_factory.mktemp("mbv2-128-train")
    build(128, out)
    return out


@pytest.mark.host
def test_mobilenetv2_035_at_128_trains_in_120_kb(mbv2_128_train: Path) -> None:
    from mcutl.link import protocol as proto
    from mcutl.link.session import open_session
    from mcutl.link.trainer import TrainDevice
    from mcutl.targets import load_target
    from mcutl.verify.harness import random_samples, verify

    plan = json.loads((mbv2_128_train / "plan.json").read_text())
    assert plan["total_bytes"] <= 120 * 1024 < plan["sram_bytes"]
    assert plan["schedule"]["kind"] == "row-streamed"
    assert plan["input_kept"] is False  # the backward reuses the input's 49,152 B
    # the backward crosses backbone blocks: the connector is a stage, not the head's map
    assert plan["param_count"] > 1130  # more than the head (112 x 10 + 10)
    rep = verify(mbv2_128_train, steps=6, check_every=3)
    assert rep.passed, rep.first_mismatch
    # a sample trained on is gone: INFER says so instead of answering from garbage
    info = BuildInfo.load(mbv2_128_train)
    xq, _ = random_samples(info, 1, seed=3)
    with open_session(load_target("host"), mbv2_128_train / info.firmware["host"]) as s:
        dev = TrainDevice(s.device)
        dev.sample(xq[0], 1)
        before = dev.infer(10)
        dev.step()
        with pytest.raises(proto.DeviceError) as err:
            dev.infer(10)
        assert err.value.code == proto.ErrorCode.BAD_STATE
        assert "send the SAMPLE again" in err.value.reason
        dev.sample(xq[0], 1)
        assert np.isfinite(dev.infer(10)).all() and before.shape == (10,)
        s.finish(0)


@needs_qemu
@pytest.mark.qemu
def test_mobilenetv2_035_at_128_trains_in_qemu(mbv2_128_train: Path) -> None:
    from mcutl.verify.harness import verify

    host = verify(mbv2_128_train, steps=4, check_every=1000)
    dev = verify(mbv2_128_train, steps=4, check_every=2, qemu=True, against=host.steps)
    assert dev.passed, dev.first_mismatch
    assert [r.digest for r in dev.steps] == [r.digest for r in host.steps]


@pytest.mark.tflite
def test_a_band_wholly_in_the_padding_is_never_streamed(tmp_path: Path) -> None:
    """A 1x1 conv padded by 3 rows: its first and last output rows read no input row. A
    band of them would be a kernel call on zero rows (the device rejects it): such a
    segment is not valid, and the streamed build of the model is bit-exact."""
    from tests.test_pad_bitexact import _bitexact, _PadChain, samples

    shape = (1, 2, 6, 5)
    model = _PadChain().eval()
    g = load_and_quantize(model, samples(shape, 16), shape)
    assert g.nodes[0].attrs["pad"][0] == 3
    assert not make_stream(g, 0, 0, 1).valid  # output row 0 reads input rows [0, 0)
    assert make_stream(g, 0, 0, 4).valid
    info, _, _ = compile_backbone(model, "host", tmp_path, calib=samples(shape, 16),
                                  input_shape=shape, streaming="max")
    _bitexact(tmp_path, info, samples(shape, 40, seed=7))
