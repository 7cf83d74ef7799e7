"""pad: constant zero padding of H and W of an NHWC activation.

Attr ``pad (top, left, bottom, right)``, all >= 0; the padded cells hold real 0 (the
only value mcutl imports), which in int8 is the zero point: the output keeps its
input's scale and zero point, as TFLite's int8 PAD does.

``simplify`` folds a pad into the explicit ``pad`` of the ops that read it when every
reader can take it (``OpDef.absorb_input_pad``: convolutions, whose padding means
zeros, and another pad); what is left (a pad before a pool, where zeros would win a max or count in
an average, or read by other ops) runs as its own int8 kernel ``mcutl_pad_s8``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mcutl.ir.graph import Graph, Node
from mcutl.ops._window import pad_nhwc
from mcutl.ops.base import OpDef, QuantRule, Shape, attr_pad, get_op, register

if TYPE_CHECKING:
    from mcutl.ops.base import LoweringContext


@register
class Pad(OpDef):
    name = "pad"
    family = "pad"
    quant_rule = QuantRule.SAME_AS_INPUT

    def check(self, node: Node, graph: Graph) -> None:
        super().check(node, graph)
        if len(graph.tensors[node.inputs[0]].shape) != 4:
            raise self.unsupported(node, "needs a 4-D NHWC input")
        attr_pad(node)

    def infer_shape(self, node: Node, in_shapes: Sequence[Shape | None]) -> list[Shape]:
        x = in_shapes[0]
        assert x is not None
        t, left, b, r = attr_pad(node)
        return [(x[0], x[1] + t + b, x[2] + left + r, x[3])]

    def reference_f32(self, node: Node, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        assert x is not None
        return [pad_nhwc(x, attr_pad(node), 0.0)]

    def simplify(self, graph: Graph, node: Node) -> bool:
        """Drop a pad of nothing; fold one into readers that all absorb it."""
        x, out = node.inputs[0], node.outputs[0]
        pad = attr_pad(node)
        readers = graph.consumers(out)
        if out in graph.outputs:
            return False
        if any(pad) and not (readers and all(
                get_op(r.op, r).can_absorb_input_pad(graph, r, out) for r in readers)):
            return False
        for r in readers:
            get_op(r.op, r).absorb_input_pad(graph, r, pad, graph.tensors[x].shape)
        graph.remove_node(node)
        graph.replace_uses(out, x)
        graph.prune()
        return True

    def can_absorb_input_pad(self, graph: Graph, node: Node, tensor: str) -> bool:
        return True  # two zero pads are one

    def absorb_input_pad(self, graph: Graph, node: Node, pad: tuple[int, int, int, int],
                         unpadded: Shape) -> None:
        node.attrs["pad"] = tuple(p + q for p, q in zip(pad, attr_pad(node), strict=True))

    def reference_int8(self, node: Node, graph: Graph,
                       inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        from mcutl.ops._lowering import qparams
        from mcutl.quant import int8_ref

        x = inputs[0]
        assert x is not None
        t, left, b, r = attr_pad(node)
        _, zp = qparams(graph.tensors[node.inputs[0]])
        return [int8_ref.pad_s8(x, t, b, left, r, zp)]

    def lower_tflite(self, node: Node, ctx: LoweringContext) -> None:
        t, left, b, r = attr_pad(node)
        paddings = np.array([[0, 0], [t, b], [left, r], [0, 0]], np.int32)
        out = node.outputs[0]
        ctx.op("PAD", [ctx.tensor(node.inputs[0]),
                       ctx.const(f"{out}/paddings", paddings, None, None)],
               [ctx.tensor(out)])

    def lower_c(self, node: Node, graph: Graph, ctx: Any) -> None:
        from mcutl.ops._lowering import describe, qparams

        x = graph.tensors[node.inputs[0]]
        t, left, b, r = attr_pad(node)
        _, zp = qparams(x)
        ctx.call("mcutl_pad_s8",
                 [ctx.dims(x.shape), ctx.act(node.inputs[0]), str(t), str(b), str(left),
                  str(r), str(zp), ctx.act(node.outputs[0])],
                 describe(node, graph, f"top/left/bottom/right {t}/{left}/{b}/{r}"),
                 node=node.name)
