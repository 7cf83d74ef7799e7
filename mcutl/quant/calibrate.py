"""Calibration: run the float graph on representative inputs, record each activation's range."""

from __future__ import annotations

import numpy as np

from mcutl.ir.graph import Graph
from mcutl.ir.interp import run_f32
from mcutl.ir.layout import to_ir_layout
from mcutl.validate import check_batch, check_numeric, source_sample_shape

SOURCE_RANK = {"NCHW": 4, "NCL": 3, "NC": 2, "NHWC": 4}


def as_batch(graph: Graph, calib: np.ndarray) -> np.ndarray:
    """``calib`` as a float32 batch in the source layout (a single sample gets a batch axis)."""
    x = np.asarray(calib)
    check_numeric(x, "calibration data")
    x = x.astype(np.float32)
    in_shape = graph.tensors[graph.inputs[0]].shape
    rank = len(in_shape) if graph.source_layout == "NHWC" else SOURCE_RANK[
        graph.source_layout]
    if x.ndim == rank - 1:
        x = x[None]
    check_batch(x, source_sample_shape(in_shape, graph.source_layout), graph.source_layout,
                "calibration data")
    return x


def calibrate(graph: Graph, calib: np.ndarray, batch: int = 64) -> dict[str, tuple[float, float]]:
    """Min and max of every activation (graph input included) over the calibration batch.

    ``calib``: samples in the user's layout, ``(N, C, H, W)`` / ``(N, C, L)`` /
    ``(N, F)``, run ``batch`` samples at a time.
    """
    if len(graph.inputs) != 1:
        raise ValueError("calibration supports single-input graphs")
    x = as_batch(graph, calib)
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for start in range(0, x.shape[0], batch):
        chunk = to_ir_layout(x[start:start + batch], graph.source_layout)
        values = run_f32(graph, chunk, source_layout=False, keep_all=True)
        for name, v in values.items():
            lo[name] = min(lo.get(name, np.inf), float(v.min()))
            hi[name] = max(hi.get(name, -np.inf), float(v.max()))
    return {k: (lo[k], hi[k]) for k in lo}
