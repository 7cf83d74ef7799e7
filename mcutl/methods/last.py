"""Last layer: a new linear head on the frozen backbone's features, nothing else trained.

The cheapest baseline of the Rep-Net paper: no gradient crosses the backbone, so the
step saves no activation and needs no backbone gradient; the memory is the head's
parameters, gradients and optimizer state and the backbone's forward.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mcutl.ir.graph import Graph
from mcutl.ir.trainable import TrainableModel
from mcutl.methods.common import MethodError, cut_classifier, head_nodes
from mcutl.methods.registry import Method, register


@dataclass
class LastSpec:
    """Options of the last-layer baseline."""

    seed: int = field(default=0, metadata={"help": "seed of the head's initial weights"})


def build_last(backbone_q: Graph, num_classes: int, spec: LastSpec | None = None,
               cut: str | None = None) -> TrainableModel:
    """The backbone cut before its classifier (``cut``: see ``cut_classifier``), its
    features dequantised into a new (num_classes, C) linear head."""
    spec = spec if spec is not None else LastSpec()
    if not backbone_q.is_quantized:
        raise MethodError("the backbone must be quantised to int8 first")
    g = cut_classifier(backbone_q, cut)
    nodes, shapes = head_nodes(g, num_classes, spec.seed)
    return TrainableModel("last", g, nodes, shapes, "logits", spec=asdict(spec))


def _summary(tm: TrainableModel) -> str:
    return f"last layer: a {tm.shape_of('features_f')[1]} -> {tm.num_classes} head, " \
           f"{tm.parameter_count()} trainable parameters"



register(Method(
    name="last",
    title="last layer: a new linear head on the frozen features",
    spec=LastSpec,
    build=build_last,
    capability=5,
    # a head on raw frozen features: 0.1 is the tables' best (52 / 87 % against 48 / 86 %
    # at 0.03) but diverged on a random-weight ResNet-8 (tests/test_defaults.py)
    lr=0.03,
    summary=_summary,
))
