"""PyTorch -> float IR through ``torch.export``: an ``nn.Module`` or a ``.pt2`` program.

Route: ``torch.export`` the module (or load the ``.pt2``), ``run_decompositions()``
to the core ATen op set, then walk that FX graph op by op into the GraphBuilder.
This needs no ONNX exporter (the dynamo ONNX exporter needs onnxscript, which
mcutl does not depend on; the TorchScript one is deprecated) and reads saved
programs and live modules the same way.
"""

from __future__ import annotations

import logging
import operator
import re
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind

from mcutl.frontend.builder import GraphBuilder
from mcutl.ir.graph import Graph
from mcutl.validate import ModelFileError

aten = torch.ops.aten
Handler = Callable[[GraphBuilder, torch.fx.Node, list[Any]], None]


def _name(arg: Any) -> Any:
    """FX nodes become their names; lists recurse; other values pass through."""
    if isinstance(arg, torch.fx.Node):
        return arg.name
    if isinstance(arg, list | tuple):
        return [_name(a) for a in arg]
    return arg


def _label(n: torch.fx.Node) -> str:
    """IR node name: the module path that produced the op ('features.0.0'), else the FX name."""
    stack = n.meta.get("nn_module_stack")
    path = list(stack.values())[-1][0] if stack else ""
    return path or n.name


def _pair(v: Any, n: int) -> list[int]:
    v = [int(x) for x in v] if isinstance(v, list | tuple) else [int(v)]
    return v * n if len(v) == 1 else v


def _conv(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    x, w, bias, stride, padding, dilation, transposed, _out_pad, groups = a
    if transposed:
        raise b.unsupported("transposed convolution")
    weight = b.const(w)
    nsp = weight.ndim - 2
    pads = _pair(padding, nsp)
    b.conv(_label(n), n.name, x, weight, b.const(bias) if bias else None, _pair(stride, nsp),
           pads + pads, _pair(dilation, nsp), int(groups))


def _batchnorm(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    x, w, bias, mean, var, _momentum, eps = a
    c = b.value(x).src_shape[1]
    gamma = b.const(w) if w else np.ones(c, np.float32)
    beta = b.const(bias) if bias else np.zeros(c, np.float32)
    b.batchnorm(_label(n), n.name, x, gamma, beta, b.const(mean), b.const(var), float(eps))


def _clamp(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    lo = float("-inf") if len(a) < 2 or a[1] is None else float(a[1])
    hi = float("inf") if len(a) < 3 or a[2] is None else float(a[2])
    b.clip(_label(n), n.name, a[0], lo, hi)


def _hardtanh(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    b.clip(_label(n), n.name, a[0], float(a[1]) if len(a) > 1 else -1.0,
           float(a[2]) if len(a) > 2 else 1.0)


def _add(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    if float(n.kwargs.get("alpha", 1)) != 1.0 or not isinstance(a[1], str):
        raise b.unsupported("add with alpha != 1 or a Python scalar")
    b.add(_label(n), n.name, a[0], a[1])


def _maxpool(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    kernel = _pair(a[1], 2)
    stride = _pair(a[2], 2) if len(a) > 2 and a[2] else kernel
    pad = _pair(a[3], 2) if len(a) > 3 else [0, 0]
    if len(a) > 4 and _pair(a[4], 2) != [1, 1]:
        raise b.unsupported("max pooling with dilation")
    b.pool("max", _label(n), n.name, a[0], kernel, stride, pad + pad,
           bool(a[5]) if len(a) > 5 else False)


def _avgpool(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    kernel = _pair(a[1], 2)
    stride = _pair(a[2], 2) if len(a) > 2 and a[2] else kernel
    pad = _pair(a[3], 2) if len(a) > 3 else [0, 0]
    if len(a) > 6 and a[6] is not None:
        raise b.unsupported("avg_pool2d with divisor_override")
    b.pool("avg", _label(n), n.name, a[0], kernel, stride, pad + pad,
           bool(a[4]) if len(a) > 4 else False, bool(a[5]) if len(a) > 5 else True)


def _constant_pad(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    """constant_pad_nd(x, pad, value): ``pad`` pairs from the last axis backwards."""
    x = b.value(a[0])
    rank = len(x.src_shape)
    pad = [int(p) for p in a[1]]
    if len(pad) % 2 or len(pad) > 2 * rank:
        raise b.unsupported(f"constant_pad_nd with pad {tuple(pad)} for a rank-{rank} input")
    begins, ends = [0] * rank, [0] * rank
    for k in range(len(pad) // 2):
        begins[rank - 1 - k], ends[rank - 1 - k] = pad[2 * k], pad[2 * k + 1]
    value = a[2] if len(a) > 2 else n.kwargs.get("value", 0)
    if not isinstance(value, int | float):
        raise b.unsupported("constant_pad_nd with a value that is not a number; only zero "
                            "padding is supported")
    b.pad(_label(n), n.name, a[0], begins + ends, float(value))


def _mean(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    b.mean(_label(n), n.name, a[0], a[1], bool(a[2]) if len(a) > 2 else False)


def _adaptive_avg(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    if any(int(d) != 1 for d in a[1]):
        raise b.unsupported(f"adaptive average pooling to {a[1]} (only to 1)")
    b.global_avgpool(_label(n), n.name, a[0])


def _reshape_to_meta(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    """view/reshape/squeeze/unsqueeze/flatten: the target shape is the traced one."""
    b.reshape(_label(n), n.name, a[0], [int(d) for d in n.meta["val"].shape])


def _alias(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    b.alias(n.name, a[0])


def _getitem(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    if a[1] != 0:
        raise b.unsupported(f"use of output {a[1]} of a multi-output op (only output 0)")
    b.alias(n.name, a[0])


def _addmm(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    bias, x, wt = a[0], a[1], a[2]
    if float(n.kwargs.get("beta", 1)) != 1.0 or float(n.kwargs.get("alpha", 1)) != 1.0:
        raise b.unsupported("addmm with alpha/beta != 1")
    b.linear(_label(n), n.name, x, np.ascontiguousarray(b.const(wt).T),
             b.const(bias).reshape(-1))


def _mm(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    b.linear(_label(n), n.name, a[0], np.ascontiguousarray(b.const(a[1]).T), None)


def _linear(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    bias = b.const(a[2]) if len(a) > 2 and a[2] else None
    b.linear(_label(n), n.name, a[0], b.const(a[1]), bias)


def _relu(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    b.act(_label(n), n.name, a[0], "relu")


def _relu6(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    b.act(_label(n), n.name, a[0], "relu6")


def _cat(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    b.concat(_label(n), n.name, a[0], int(a[1]) if len(a) > 1 else 0)


def _permute_const(b: GraphBuilder, n: torch.fx.Node, a: list[Any]) -> None:
    if not b.is_const(a[0]):
        raise b.unsupported("permute/transpose of an activation")
    x = b.const(a[0])
    axes = list(reversed(range(x.ndim))) if len(a) == 1 else [int(d) for d in a[1]]
    b.set_const(n.name, np.ascontiguousarray(np.transpose(x, axes)))


HANDLERS: dict[Any, Handler] = {
    aten.convolution.default: _conv,
    aten._native_batch_norm_legit_no_training.default: _batchnorm,
    aten.relu.default: _relu, aten.relu6.default: _relu6,
    aten.hardtanh.default: _hardtanh, aten.clamp.default: _clamp,
    aten.add.Tensor: _add,
    aten.max_pool2d_with_indices.default: _maxpool, aten.max_pool2d.default: _maxpool,
    aten.avg_pool2d.default: _avgpool,
    aten.constant_pad_nd.default: _constant_pad,
    aten.mean.dim: _mean, aten.adaptive_avg_pool2d.default: _adaptive_avg,
    aten._adaptive_avg_pool2d.default: _adaptive_avg,
    aten.view.default: _reshape_to_meta, aten.reshape.default: _reshape_to_meta,
    aten._unsafe_view.default: _reshape_to_meta, aten.squeeze.dims: _reshape_to_meta,
    aten.squeeze.dim: _reshape_to_meta, aten.squeeze.default: _reshape_to_meta,
    aten.unsqueeze.default: _reshape_to_meta, aten.flatten.using_ints: _reshape_to_meta,
    aten.clone.default: _alias, aten.alias.default: _alias, aten.detach.default: _alias,
    aten.dropout.default: _alias, operator.getitem: _getitem,
    aten.addmm.default: _addmm, aten.mm.default: _mm, aten.linear.default: _linear,
    aten.cat.default: _cat,
    aten.permute.default: _permute_const, aten.t.default: _permute_const,
}

SUPPORTED = sorted(str(k) if not callable(getattr(k, "name", None)) else k.name()
                   for k in HANDLERS)


#: whole layers mcutl has no kernels for; named before decomposition (an LSTM decomposes
#: into many small ops, and the first unsupported one of those would hide what it is)
UNSUPPORTED_LAYERS = re.compile(r"lstm|gru|rnn_|embedding|attention|layer_norm|group_norm|"
                                r"instance_norm|conv_transpose|upsample|interpolate")


def _module_type(n: torch.fx.Node) -> str:
    stack = n.meta.get("nn_module_stack")
    if not stack:
        return ""
    path, kind = list(stack.values())[-1][:2]
    name = getattr(kind, "__name__", str(kind).rsplit(".", 1)[-1].strip("'>"))
    return f"{path}: {name}" if path else name


#: paddings that repeat the input; they decompose into index arithmetic (arange, abs,
#: index, slice_scatter...), so they are named before decomposition
PAD_MODES = {aten.reflection_pad1d.default: "reflect", aten.reflection_pad2d.default: "reflect",
             aten.reflection_pad3d.default: "reflect",
             aten.replication_pad1d.default: "replicate",
             aten.replication_pad2d.default: "replicate",
             aten.replication_pad3d.default: "replicate",
             aten._pad_circular.default: "circular"}


def _pad_mode(node: torch.fx.Node) -> str:
    """The mode of a padding node that is not constant, else ''."""
    if node.op != "call_function":
        return ""
    if node.target is aten.pad.default:
        mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
        return "" if mode == "constant" else str(mode)
    return PAD_MODES.get(node.target, "")


def _reject_unsupported_layers(ep: ExportedProgram) -> None:
    for node in ep.graph.nodes:
        target = str(node.target)
        mode = _pad_mode(node)
        if mode:
            b = GraphBuilder(SUPPORTED)
            with b.at(target, f"{node.name} ({_module_type(node) or _label(node)})"):
                raise b.pad_mode_unsupported(mode)
        if node.op == "call_function" and node.target not in HANDLERS and \
                UNSUPPORTED_LAYERS.search(target):
            b = GraphBuilder(SUPPORTED)
            with b.at(target, f"{node.name} ({_module_type(node) or _label(node)})"):
                raise b.unsupported("this layer has no int8 kernel in mcutl")


def from_exported(ep: ExportedProgram) -> Graph:
    """Import a ``torch.export`` program (any dialect; decomposed to core ATen here)."""
    _reject_unsupported_layers(ep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch-internal pytree deprecations
        ep = ep.run_decompositions()
    b = GraphBuilder(SUPPORTED)
    params = {**ep.state_dict, **ep.constants}
    kinds = {s.arg.name: s for s in ep.graph_signature.input_specs}
    for node in ep.graph.nodes:
        where = node.name if node.op != "call_function" else f"{node.name} ({_label(node)})"
        with b.at(str(node.target), where):
            if node.op == "placeholder":
                spec = kinds[node.name]
                if spec.kind == InputKind.USER_INPUT:
                    b.add_input(node.name, tuple(node.meta["val"].shape))
                else:
                    b.set_const(node.name, params[spec.target].detach().cpu().numpy())
            elif node.op == "call_function":
                handler = HANDLERS.get(node.target)
                if handler is None:
                    raise b.unsupported("no import rule for this op")
                handler(b, node, _name(list(node.args)))
            elif node.op == "output":
                outputs = _name(node.args[0])
            else:
                raise b.unsupported(f"FX node kind {node.op!r}")
    return b.finish(outputs if isinstance(outputs, list) else [outputs])


def from_module(module: torch.nn.Module, input_shape: Sequence[int]) -> Graph:
    """Import an ``nn.Module``, traced in eval mode on a zero input of ``input_shape``.

    ``input_shape`` includes the batch axis (its value is ignored: the IR has batch 1).
    """
    shape = (1, *(int(d) for d in input_shape[1:]))  # the IR has batch 1
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            ep = torch.export.export(module, (torch.zeros(shape),))
    finally:
        module.train(was_training)
    return from_exported(ep)


def load_pt2(path: str | Path) -> Graph:
    """Import a program saved with ``torch.export.save``."""
    what = str(path)
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{what}: not a torch.export archive (not a zip file); save the "
                             "program with torch.export.save")
    log = logging.getLogger("torch.export")  # it logs the failure with a traceback
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        ep = torch.export.load(str(path))
    except (RuntimeError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        problem = str(exc).strip().splitlines()[0][:200]
        if "warnings above" in problem:  # torch's pointer to the log silenced here
            problem = "torch could not deserialize it"
        raise ModelFileError(f"{what}: cannot load this torch.export program ({problem}); save "
                             f"it again with torch.export.save (torch {torch.__version__})"
                             ) from exc
    finally:
        log.setLevel(level)
    return from_exported(ep)
