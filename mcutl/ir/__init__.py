"""The mcutl IR: Graph, Node, Tensor, QuantParams and their helpers.

Executing a graph needs the op registry: see ``mcutl.ir.interp`` (not imported
here, so that ``mcutl.ops`` can import this package).
"""

from mcutl.ir.graph import (
    DTYPES,
    SOURCE_LAYOUTS,
    Graph,
    GraphError,
    Node,
    QuantParams,
    Tensor,
)
from mcutl.ir.layout import from_ir_layout, to_ir_layout

__all__ = [
    "DTYPES", "SOURCE_LAYOUTS", "Graph", "GraphError", "Node", "QuantParams", "Tensor",
    "from_ir_layout", "to_ir_layout",
]
