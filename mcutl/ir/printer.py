"""Human-readable listing of a graph: one line per node with shapes and dtypes."""

from __future__ import annotations

from mcutl.ir.graph import Graph, Tensor


def format_tensor(t: Tensor) -> str:
    shape = "x".join(str(d) for d in t.shape) or "scalar"
    text = f"{t.name}:{t.dtype}[{shape}]"
    if t.quant is not None:
        q = t.quant
        if q.axis is None:
            text += f"(s={float(q.scale[0]):.6g},zp={int(q.zero_point[0])})"
        else:
            text += f"(per-channel axis={q.axis})"
    return text


def _attr(value: object) -> str:
    if isinstance(value, tuple | list):
        return "(" + ",".join(str(v) for v in value) + ")"
    return str(value)


def format_graph(graph: Graph) -> str:
    """Inputs, then ``name = op(inputs) {attrs} -> outputs`` per node, then outputs."""
    lines = [f"graph (source layout {graph.source_layout}, {len(graph.nodes)} nodes)"]
    for name in graph.inputs:
        lines.append(f"  input  {format_tensor(graph.tensors[name])}")
    for node in graph.nodes:
        ins = []
        for i in node.inputs:
            if i == "":
                ins.append("-")
                continue
            t = graph.tensors.get(i)
            ins.append(format_tensor(t) if t is not None else f"{i}:?")
        outs = [format_tensor(graph.tensors[o]) if o in graph.tensors else f"{o}:?"
                for o in node.outputs]
        attrs = " ".join(f"{k}={_attr(v)}" for k, v in node.attrs.items())
        attrs = f" {{{attrs}}}" if attrs else ""
        lines.append(f"  {node.name}: {node.op}{attrs}")
        lines.append(f"      in  {', '.join(ins)}")
        lines.append(f"      out {', '.join(outs)}")
    for name in graph.outputs:
        lines.append(f"  output {format_tensor(graph.tensors[name])}")
    return "\n".join(lines)
