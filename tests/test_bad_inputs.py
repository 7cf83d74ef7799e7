"""Every bad input a new user tried gets a clear mcutl error: exit code 2, `error: ...`
naming the problem and the fix, no traceback (issue 14, item 1).

One row per case; the CLI runs in-process. Fixtures are tiny: a Conv1d net (NCL, input
(1, 2, 16)) as ONNX / .tflite, and one training build of it for the host (gcc), shared
by the run / train / verify rows.
"""

from __future__ import annotations

import io
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcutl.cli import main

SHAPE = (1, 2, 16)  # the test net's input: NCL


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                         nn.Linear(4, 3)).eval()


class _LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(2, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        return self.fc(y[:, -1])


class _PadNet(nn.Module):
    """``F.pad(x, pad, **kw)`` of the (1, 2, 16) NCL input, then a Conv1d."""

    def __init__(self, pad: tuple[int, ...], **kw: object) -> None:
        super().__init__()
        self.pad, self.kw = pad, kw
        self.conv = nn.Conv1d(3 if len(pad) > 2 else 2, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad, **self.kw))  # type: ignore[arg-type]


def _onnx_pad_value_from_graph() -> onnx.ModelProto:
    """Pad whose constant_value is an activation (a Relu of the input), hand-built."""
    h = onnx.helper
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"),
             h.make_node("Pad", ["x", "pads", "r"], ["y"], name="pad")]
    pads = onnx.numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 1], np.int64), "pads")
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT,
                                                               list(SHAPE))],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2, 18])],
                         [pads])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])


def _tflite_pad(paddings: list[list[int]]) -> bytes:
    """An int8 .tflite with one PAD of a (1, 4, 4, 2) input by ``paddings``."""
    from mcutl.tflite.builder import TFLiteBuilder

    b = TFLiteBuilder()
    x = b.add_tensor("x", [1, 4, 4, 2], "int8", scale=0.1, zero_point=3)
    p = b.add_tensor("paddings", [4, 2], "int32", data=np.array(paddings, np.int32))
    shape = [4 + paddings[k][0] + paddings[k][1] if k else 1 for k in range(3)]
    y = b.add_tensor("y", [*shape, 2 + sum(paddings[3])], "int8", scale=0.1, zero_point=3)
    b.add_operator("PAD", [x, p], [y])
    return b.finish([x], [y])


def _onnx(model: nn.Module, shape: tuple[int, ...], **kw: object) -> bytes:
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(shape),), f, dynamo=False, **kw)
    return f.getvalue()


def _savez(path: Path, *arrays: np.ndarray) -> Path:
    np.savez(path, *arrays)
    return path


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every bad (and a few good) input files, in one folder."""
    from mcutl.frontend.onnx_import import from_onnx
    from mcutl.quant.ptq import quantize
    from mcutl.tflite.export import export_tflite

    d = tmp_path_factory.mktemp("bad_inputs")
    rng = np.random.default_rng(0)
    good = _onnx(_net(), SHAPE, input_names=["x"])
    (d / "net.onnx").write_bytes(good)
    (d / "sym.onnx").write_bytes(_onnx(_net(), SHAPE, input_names=["x"],
                                       dynamic_axes={"x": {0: "batch", 2: "length"}}))
    (d / "lstm.onnx").write_bytes(_onnx(_LSTMNet().eval(), (1, 10, 2)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(_LSTMNet().eval(), (torch.zeros(1, 10, 2),)),
                          d / "lstm.pt2")
    (d / "random.pt2").write_bytes(rng.bytes(500))
    _write_pads(d)
    (d / "trunc.onnx").write_bytes(good[: len(good) // 2])
    (d / "random.onnx").write_bytes(rng.bytes(2000))
    (d / "empty.onnx").write_bytes(b"")
    calib = rng.standard_normal((8, *SHAPE[1:])).astype(np.float32)
    tfl = export_tflite(quantize(from_onnx(good), calib))
    (d / "trunc.tflite").write_bytes(tfl[: len(tfl) // 2])
    (d / "random.tflite").write_bytes(rng.bytes(2000))
    (d / "empty.tflite").write_bytes(b"")
    (d / "model.bin").write_bytes(good)
    (d / "folder.onnx").mkdir()
    (d / "taken").write_text("a file where the build folder should go\n")
    _savez(d / "calib.npz", calib)
    bad = calib.copy()
    bad[5, 1, 3] = np.nan
    _savez(d / "calib_nan.npz", bad)
    _savez(d / "calib_shape.npz", calib.transpose(0, 2, 1))
    _savez(d / "calib_str.npz", np.array([["a", "b"]]))
    np.savez(d / "no_arrays.npz")
    (d / "garbage.npz").write_bytes(rng.bytes(300))
    _write_data(d, rng)
    return d


def _write_pads(d: Path) -> None:
    """Paddings mcutl refuses: repeating modes, cropping, channel pads, non-zero values."""
    for name, pad, kw in (("pad_reflect", (2, 2), {"mode": "reflect"}),
                          ("pad_negative", (-1, 2), {}),
                          ("pad_channels", (0, 0, 1, 0), {}),
                          ("pad_value", (1, 1), {"value": 0.5})):
        (d / f"{name}.onnx").write_bytes(_onnx(_PadNet(pad, **kw).eval(), SHAPE))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(nn.Sequential(nn.ReplicationPad1d(2)).eval(),
                                              (torch.zeros(SHAPE),)), d / "pad_replicate.pt2")
    onnx.save(_onnx_pad_value_from_graph(), d / "pad_value_from_graph.onnx")
    (d / "pad_channels.tflite").write_bytes(_tflite_pad([[0, 0], [1, 1], [0, 0], [0, 1]]))
    (d / "pad_negative.tflite").write_bytes(_tflite_pad([[0, 0], [-1, 0], [0, 0], [0, 0]]))


def _write_data(d: Path, rng: np.random.Generator) -> None:
    """Labelled sets for train / verify / plan --data, and inputs for run."""
    x = rng.standard_normal((30, *SHAPE[1:])).astype(np.float32)
    y = rng.integers(0, 3, 30)
    _savez(d / "data.npz", x, y)
    nan = x.copy()
    nan[7, 0, 2] = np.nan
    _savez(d / "data_nan.npz", nan, y)
    _savez(d / "data_1e6.npz", x * 1e6, y)
    _savez(d / "data_float_labels.npz", x, y + 0.5)
    _savez(d / "data_label_5.npz", x, np.where(np.arange(30) == 4, 5, y))
    _savez(d / "data_lengths.npz", x, y[:29])
    _savez(d / "data_one_array.npz", x)
    _savez(d / "data_empty.npz", x[:0], y[:0])
    _savez(d / "data_two.npz", x[:2], y[:2])
    _savez(d / "data_layout.npz", x.transpose(0, 2, 1), y)
    _savez(d / "data_str.npz", np.full((30, 2, 16), "x"), y)
    _savez(d / "input.npz", x)
    _savez(d / "input_shape.npz", x[:, :, :8])
    _savez(d / "input_str.npz", np.full((3, 2, 16), "x"))
    _savez(d / "input_nan.npz", nan)
    _savez(d / "input_empty.npz", x[:0])
    _savez(d / "input_1e6.npz", x * 1e6)


@pytest.fixture(scope="session")
def build(files: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One training build (method `last`, 3 classes) of the test net for the host."""
    from mcutl.compile import compile_training

    out = tmp_path_factory.mktemp("bad_inputs_build")
    calib = np.load(files / "calib.npz")["arr_0"]
    compile_training(_net(), "host", out, num_classes=3, calib=calib, input_shape=SHAPE,
                     method="last")
    return out


def _broken_build(build: Path, tmp: Path, what: str) -> Path:
    b = tmp / "b"
    shutil.copytree(build, b)
    if what == "json":
        (b / "build.json").write_text('{"target": "host", "firm')
    else:
        (b / "host" / "firmware").unlink()
    return b


@dataclass(frozen=True)
class Case:
    argv: Callable[[Path, Path, Path], list[str]]  # (files, build or tmp, tmp) -> argv
    words: tuple[str, ...]  # in the message, case-insensitive: the problem and the fix
    needs_build: bool = False


def _compile(*extra: str, model: str = "net.onnx") -> Callable[[Path, Path, Path], list[str]]:
    return lambda f, b, t: ["compile", str(f / model), "--target", "host",
                            "-o", str(t / "out"), *[e.format(f=f) for e in extra]]


def _train_opts(*extra: str) -> Callable[[Path, Path, Path], list[str]]:
    return _compile("--calib", "{f}/calib.npz", "--method", "last", *extra)


def _on_build(cmd: str, *extra: str) -> Callable[[Path, Path, Path], list[str]]:
    return lambda f, b, t: [cmd, str(b), *[e.format(f=f) for e in extra]]


def _plan(*extra: str) -> Callable[[Path, Path, Path], list[str]]:
    return lambda f, b, t: ["plan", str(f / "net.onnx"), "--target", "host", "--budget", "64K",
                            "--calib", str(f / "calib.npz"), "-o", str(t / "plan"),
                            *[e.format(f=f) for e in extra]]


CASES: dict[str, Case] = {
    # ---- the model file
    "model_missing": Case(_compile(model="missing.onnx"), ("no such model file", "path")),
    "model_is_directory": Case(_compile(model="folder.onnx"), ("is a directory", "model file")),
    "model_unknown_extension": Case(_compile(model="model.bin"),
                                    ("unknown model kind", ".onnx")),
    "onnx_empty": Case(_compile(model="empty.onnx"), ("empty", "export")),
    "onnx_truncated": Case(_compile(model="trunc.onnx"), ("not a valid onnx", "re-export")),
    "onnx_random_bytes": Case(_compile(model="random.onnx"), ("not a valid onnx", "re-export")),
    "tflite_empty": Case(_compile(model="empty.tflite"), ("empty", "export")),
    "tflite_truncated": Case(_compile(model="trunc.tflite"), ("corrupt tflite",
                                                              "convert the model")),
    "tflite_random_bytes": Case(_compile(model="random.tflite"), ("not a tflite",
                                                                  "convert the model")),
    "onnx_symbolic_dim": Case(_compile("--calib", "{f}/calib.npz", model="sym.onnx"),
                              ("[batch, 2, length]", "symbolic dimension 'length'",
                               "--input-shape 1,2,n")),
    "input_shape_contradicts_model": Case(
        _compile("--calib", "{f}/calib.npz", "--input-shape", "1,3,16", model="sym.onnx"),
        ("--input-shape", "axis 1", "has 2 there ([batch, 2, length])")),
    "input_shape_unparsable": Case(_compile("--input-shape", "big"),
                                   ("--input-shape", "give sizes like")),
    "input_shape_zero": Case(_compile("--input-shape", "1,0,16"),
                             ("--input-shape '1,0,16'", ">= 1")),
    "lstm_unsupported": Case(_compile("--calib", "{f}/calib.npz", model="lstm.onnx"),
                             ("unsupported op 'lstm'", "supported ops")),
    "lstm_unsupported_pt2": Case(_compile("--calib", "{f}/calib.npz", model="lstm.pt2"),
                                 ("unsupported op 'aten.lstm.input'", "lstm: lstm", "no int8")),
    "pad_reflect": Case(_compile("--calib", "{f}/calib.npz", model="pad_reflect.onnx"),
                        ("unsupported op 'pad'", "pad with mode reflect", "pad with zeros")),
    "pad_replicate_pt2": Case(_compile("--calib", "{f}/calib.npz", model="pad_replicate.pt2"),
                              ("'aten.pad.default'", "replicationpad1d",
                               "pad with mode replicate", "pad with zeros")),
    "pad_negative": Case(_compile("--calib", "{f}/calib.npz", model="pad_negative.onnx"),
                         ("negative pads", "cropping", "crop the input before the model")),
    "pad_channels": Case(_compile("--calib", "{f}/calib.npz", model="pad_channels.onnx"),
                         ("pad of the batch or channel axis", "only the spatial axes")),
    "pad_value": Case(_compile("--calib", "{f}/calib.npz", model="pad_value.onnx"),
                      ("pad with the value 0.5", "only zero padding", "pad with 0")),
    "pad_value_from_graph": Case(
        _compile("--calib", "{f}/calib.npz", model="pad_value_from_graph.onnx"),
        ("constant_value that is not a constant", "only zero padding")),
    "tflite_pad_channels": Case(_compile(model="pad_channels.tflite"),
                                ("unsupported op 'pad'", "batch or channel axis",
                                 "only h and w")),
    "tflite_pad_negative": Case(_compile(model="pad_negative.tflite"),
                                ("negative paddings", "cropping")),
    "pt2_random_bytes": Case(_compile(model="random.pt2"),
                             ("not a torch.export archive", "torch.export.save")),
    "target_unknown": Case(lambda f, b, t: ["compile", str(f / "net.onnx"), "--target", "nope"],
                           ("unknown target 'nope'", "known targets: host")),
    "output_is_a_file": Case(lambda f, b, t: ["compile", str(f / "net.onnx"), "--target",
                                              "host", "--calib", str(f / "calib.npz"),
                                              "-o", str(f / "taken")],
                             ("existing file", "folder")),
    # ---- calibration data
    "calib_missing": Case(_compile("--calib", "{f}/nope.npz"), ("no such file", "--calib")),
    "calib_not_npz": Case(_compile("--calib", "{f}/garbage.npz"),
                          ("not a valid .npz", "numpy.savez")),
    "calib_no_arrays": Case(_compile("--calib", "{f}/no_arrays.npz"),
                            ("holds 0 array", "input batch first")),
    "calib_strings": Case(_compile("--calib", "{f}/calib_str.npz"), ("dtype", "give numbers")),
    "calib_wrong_shape": Case(_compile("--calib", "{f}/calib_shape.npz"),
                              ("(8, 16, 2)", "does not match", "(n, 2, 16)")),
    "calib_nan": Case(_compile("--calib", "{f}/calib_nan.npz"),
                      ("sample 5", "non-finite", "nan at index (1, 3)", "remove or fix")),
    "float_model_without_calib": Case(_compile(), ("float", "--calib")),
    # ---- training options at compile time
    "lr_nan": Case(_train_opts("--num-classes", "3", "--lr", "nan"), ("--lr", "finite", "> 0")),
    "lr_negative": Case(_train_opts("--num-classes", "3", "--lr", "-1"), ("--lr", "> 0")),
    "momentum_5": Case(_train_opts("--num-classes", "3", "--momentum", "5"),
                       ("--momentum", "[0, 1)")),
    "num_classes_1": Case(_train_opts("--num-classes", "1"), ("--num-classes", ">= 2")),
    "num_classes_0": Case(_train_opts("--num-classes", "0"), ("--num-classes", ">= 2")),
    "num_classes_negative": Case(_train_opts("--num-classes", "-3"), ("--num-classes", ">= 2")),
    "num_classes_missing": Case(_train_opts(), ("needs --num-classes",)),
    "method_unknown": Case(_train_opts("--num-classes", "3", "--method", "nope"),
                           ("nope", "last")),
    "cut_missing_node": Case(_train_opts("--num-classes", "3", "--cut", "nowhere"),
                             ("--cut 'nowhere'", "names no node", "its nodes: ")),
    # ---- plan
    "plan_budget_unparsable": Case(_plan("--num-classes", "3", "--budget", "lots"),
                                   ("--budget 'lots'", "128k")),
    "plan_budget_nan": Case(_plan("--num-classes", "3", "--budget", "nan"),
                            ("--budget 'nan'", "positive")),
    "plan_num_classes_1": Case(_plan("--num-classes", "1"), ("--num-classes", ">= 2")),
    "plan_data_one_array": Case(_plan("--num-classes", "3", "--data", "{f}/data_one_array.npz"),
                                ("holds 1 array", "inputs then labels")),
    "plan_data_labels_out_of_range": Case(
        _plan("--num-classes", "3", "--data", "{f}/data_label_5.npz"),
        ("label 4 is 5", "outside 0..2")),
    # ---- run
    "run_not_a_build": Case(lambda f, b, t: ["run", str(t), "--input", str(f / "input.npz")],
                            ("not an mcutl build folder", "mcutl compile")),
    "run_input_missing": Case(_on_build("run", "--input", "{f}/nope.npz"),
                              ("no such file",), True),
    "run_input_no_arrays": Case(_on_build("run", "--input", "{f}/no_arrays.npz"),
                                ("holds 0 array", "input batch first"), True),
    "run_input_wrong_shape": Case(_on_build("run", "--input", "{f}/input_shape.npz"),
                                  ("(30, 2, 8)", "(n, 2, 16)"), True),
    "run_input_strings": Case(_on_build("run", "--input", "{f}/input_str.npz"),
                              ("dtype", "give numbers"), True),
    "run_input_nan": Case(_on_build("run", "--input", "{f}/input_nan.npz"),
                          ("sample 7", "non-finite"), True),
    "run_input_x1e6": Case(_on_build("run", "--input", "{f}/input_1e6.npz"),
                           ("calibrated for", "saturate", "scale them"), True),
    "run_input_zero_samples": Case(_on_build("run", "--input", "{f}/input_empty.npz"),
                                   ("no samples", "at least one"), True),
    "build_json_corrupt": Case(
        lambda f, b, t: ["run", str(_broken_build(b, t, "json")), "--input",
                         str(f / "input.npz")], ("build.json is corrupt", "compile"), True),
    "host_firmware_missing": Case(
        lambda f, b, t: ["train", str(_broken_build(b, t, "fw")), "--data",
                         str(f / "data.npz")],
        ("host/firmware is missing", "compile the build again"), True),
    # ---- train
    "train_batch_0": Case(_on_build("train", "--data", "{f}/data.npz", "--batch", "0"),
                          ("--batch", ">= 1")),
    "train_epochs_negative": Case(_on_build("train", "--data", "{f}/data.npz", "--epochs", "-1"),
                                  ("--epochs", ">= 1")),
    "train_holdout_negative": Case(
        _on_build("train", "--data", "{f}/data.npz", "--holdout", "-0.5"),
        ("--holdout", "outside [0, 1)")),
    "train_holdout_2": Case(_on_build("train", "--data", "{f}/data.npz", "--holdout", "2"),
                            ("--holdout", "outside [0, 1)")),
    "train_zero_samples": Case(_on_build("train", "--data", "{f}/data_empty.npz"),
                               ("no samples", "at least one"), True),
    "train_holdout_leaves_nothing": Case(
        _on_build("train", "--data", "{f}/data_two.npz", "--holdout", "0.9"),
        ("2 samples", "none left to train on", "smaller --holdout"), True),
    "train_nan_sample": Case(_on_build("train", "--data", "{f}/data_nan.npz"),
                             ("sample 7", "non-finite", "remove or fix"), True),
    "train_inputs_x1e6": Case(_on_build("train", "--data", "{f}/data_1e6.npz"),
                              ("calibrated for", "saturate", "scale them"), True),
    "train_float_labels": Case(_on_build("train", "--data", "{f}/data_float_labels.npz"),
                               ("label 0 is", "not a class index", "integer labels"), True),
    "train_label_out_of_range": Case(_on_build("train", "--data", "{f}/data_label_5.npz"),
                                     ("label 4 is 5", "outside 0..2", "3 classes"), True),
    "train_lengths_differ": Case(_on_build("train", "--data", "{f}/data_lengths.npz"),
                                 ("30 inputs", "one label per input"), True),
    "train_data_one_array": Case(_on_build("train", "--data", "{f}/data_one_array.npz"),
                                 ("holds 1 array", "inputs then labels"), True),
    "train_wrong_layout": Case(_on_build("train", "--data", "{f}/data_layout.npz"),
                               ("(30, 16, 2)", "(n, 2, 16)", "ncl"), True),
    "train_strings": Case(_on_build("train", "--data", "{f}/data_str.npz"),
                          ("dtype", "give numbers"), True),
    # ---- verify
    "verify_batch_0": Case(_on_build("verify", "--batch", "0"), ("--batch", ">= 1")),
    "verify_steps_0": Case(_on_build("verify", "--steps", "0"), ("--steps", ">= 1")),
    "verify_zero_samples": Case(_on_build("verify", "--data", "{f}/data_empty.npz"),
                                ("no samples", "at least one"), True),
    "verify_lengths_differ": Case(_on_build("verify", "--data", "{f}/data_lengths.npz"),
                                  ("30 inputs", "one label per input"), True),
    "verify_label_out_of_range": Case(_on_build("verify", "--data", "{f}/data_label_5.npz"),
                                      ("label 4 is 5", "outside 0..2"), True),
    "verify_nan_sample": Case(_on_build("verify", "--data", "{f}/data_nan.npz"),
                              ("sample 7", "non-finite"), True),
}


def _params() -> list[object]:
    return [pytest.param(name, marks=[pytest.mark.host] if c.needs_build else [], id=name)
            for name, c in CASES.items()]


@pytest.mark.parametrize("name", _params())
def test_bad_input_gets_a_clear_error(name: str, files: Path, tmp_path: Path,
                                      request: pytest.FixtureRequest,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[name]
    build = request.getfixturevalue("build") if case.needs_build else tmp_path / "no_build"
    argv = case.argv(files, build, tmp_path)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error:" in err and "Traceback" not in err, err
    text = " ".join(err.lower().split())  # rich wraps long lines
    for word in case.words:
        assert word.lower() in text, f"{word!r} not in: {err}"


def test_input_shape_fills_a_symbolic_onnx_dim(files: Path) -> None:
    from mcutl.frontend import load_model

    g = load_model(files / "sym.onnx", input_shape=(1, 2, 16))
    assert g.tensors[g.inputs[0]].shape == (1, 1, 16, 2)


def test_python_api_refuses_bad_values(files: Path) -> None:
    from mcutl.errors import McutlError
    from mcutl.frontend import load_model
    from mcutl.quant.ptq import quantize
    from mcutl.train.codegen import TrainOptions

    calib = np.load(files / "calib_nan.npz")["arr_0"]
    with pytest.raises(McutlError, match="sample 5 has a non-finite value"):
        quantize(load_model(files / "net.onnx"), calib)
    for bad in (TrainOptions(lr=float("nan")), TrainOptions(momentum=5.0)):
        with pytest.raises(McutlError, match="must be"):
            bad.validate()


@pytest.mark.host
def test_python_api_train_and_verify_refuse_bad_arguments(build: Path, files: Path) -> None:
    from mcutl.errors import McutlError
    from mcutl.train.loop import train
    from mcutl.verify.harness import verify

    with np.load(files / "data.npz") as npz:
        x, y = npz["arr_0"], npz["arr_1"]
    with pytest.raises(McutlError, match="batch 0"):
        train(build, x, y, batch=0)
    with pytest.raises(McutlError, match="epochs -1"):
        train(build, x, y, epochs=-1)
    with pytest.raises(McutlError, match="not a class index"):
        train(build, x, y + 0.5)
    with pytest.raises(McutlError, match="saturate the int8 input"):
        train(build, x * 1e6, y)
    with pytest.raises(McutlError, match="sample 3 has a non-finite value"):
        train(build, np.where(np.arange(30)[:, None, None] == 3, np.inf, x), y)
    with pytest.raises(McutlError, match="steps 0"):
        verify(build, steps=0)
    with pytest.raises(McutlError, match="no samples"):
        verify(build, data=(x[:0], y[:0]))
