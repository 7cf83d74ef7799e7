"""Compile reports: per-layer MACs / flash / activation bytes and memory totals.

Written as report.md (for people) and report.json (for tools and benchmarks).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mcutl.codegen.backbone import GeneratedBackbone
from mcutl.ir.graph import Graph
from mcutl.targets import Target
from mcutl.toolchain import Firmware


def tflm_arena_bytes(tflite_bytes: bytes, input_shape: list[int]) -> int | None:
    """Arena TFLite Micro's interpreter reports using for the same model (None if absent)."""
    try:
        from mcutl.tflite.oracle import run_tflm
    except ImportError:
        return None
    try:
        _, used = run_tflm(tflite_bytes, [np.zeros(input_shape, dtype=np.int8)])
    except Exception:  # noqa: BLE001 - the report must not fail because the oracle does
        return None
    return int(used)


def build_report(
    target: Target,
    graph: Graph,
    gen: GeneratedBackbone,
    fws: dict[str, Firmware],
    seconds: float,
    tflite_bytes: bytes,
) -> dict[str, Any]:
    fw = fws.get("board")
    size = fw.size.to_dict() if fw is not None and fw.size is not None else None
    tin = graph.tensors[graph.inputs[0]]
    return {
        "target": target.name,
        "compile_seconds": round(seconds, 2),
        "total_macs": gen.total_macs,
        "weight_table_bytes": gen.weight_table_bytes,
        "raw_param_bytes": gen.raw_param_bytes,
        "weight_table_ratio": round(gen.weight_table_bytes / max(1, gen.raw_param_bytes), 4),
        "arena_bytes": gen.plan.arena_size(),
        "arena_lower_bound_bytes": gen.plan.lower_bound(),
        "tflm_arena_bytes": tflm_arena_bytes(tflite_bytes, list(tin.shape)),
        "schedule": gen.schedule(graph),
        "firmware_size": size,
        "layers": [asdict(layer) for layer in gen.layers],
        "plan": gen.plan.to_dict(),
    }


def render_markdown(rep: dict[str, Any]) -> str:
    lines = [
        f"# mcutl build report ({rep['target']})",
        "",
        "| # | node | op | output | MAC | flash B | activations B |",
        "| ---: | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for layer in rep["layers"]:
        shape = "x".join(map(str, layer["output_shape"]))
        lines.append(
            f"| {layer['index']} | {layer['node']} | {layer['op']} | {shape} | "
            f"{layer['macs']:,} | {layer['flash_bytes']:,} | {layer['activation_bytes']:,} |"
        )
    lines += [
        "",
        "| total | bytes |",
        "| --- | ---: |",
        f"| MAC per inference | {rep['total_macs']:,} |",
        f"| weight tables in flash | {rep['weight_table_bytes']:,} |",
        f"| raw int8 weights + int32 bias + requant params | {rep['raw_param_bytes']:,} |",
        f"| inference arena (planned) | {rep['arena_bytes']:,} |",
        f"| arena lower bound (most bytes live at once) | {rep['arena_lower_bound_bytes']:,} |",
        f"| TFLite Micro arena for the same model | {rep['tflm_arena_bytes'] or 'n/a'} |",
    ]
    for seg in rep["schedule"].get("segments", []):
        nodes = seg["nodes"]
        lines.append(
            f"| row-streamed: {nodes[0]} .. {nodes[-1]} ({len(nodes)} layers, "
            f"{seg['bands']} bands of {seg['band_rows']} rows of {seg['output']}): MAC "
            f"recomputed in the halos | {seg['extra_macs']:,} |")
    if rep["firmware_size"]:
        s = rep["firmware_size"]
        lines += [
            f"| firmware flash used (text + data) | {s['flash_used']:,} of "
            f"{s['flash_capacity']:,} |",
            f"| firmware static RAM (data + bss, arena included) | {s['static_ram']:,} of "
            f"{s['sram_capacity']:,} |",
            f"| reserved stack | {s['stack']:,} |",
        ]
    return "\n".join(lines) + "\n"


def write_reports(
    out: Path,
    target: Target,
    graph: Graph,
    gen: GeneratedBackbone,
    fws: dict[str, Firmware],
    seconds: float,
) -> dict[str, Any]:
    rep = build_report(target, graph, gen, fws, seconds, (out / "model.tflite").read_bytes())
    (out / "report.json").write_text(json.dumps(rep, indent=1) + "\n")
    (out / "report.md").write_text(render_markdown(rep))
    return rep
