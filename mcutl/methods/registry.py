"""The training-method registry: one file per method in mcutl/methods/, each registering
a ``Method`` (its typed options and how it builds a trainable graph). The pipeline and
the CLI ask the registry; they never name a method."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcutl.errors import McutlError
from mcutl.ir.graph import Graph
from mcutl.ir.trainable import TrainableModel


class UnknownMethodError(McutlError):
    """--method names no registered method."""


@dataclass(frozen=True)
class Method:
    name: str
    title: str  # one line for `--help` and reports
    spec: type  # a dataclass of the method's options; it validates them itself
    #: build(quantised backbone, num_classes, spec, cut) -> the trainable graph
    build: Callable[[Graph, int, Any, str | None], TrainableModel]
    #: one line on what was built, for the CLI
    summary: Callable[[TrainableModel], str]
    #: rank by capability, 0 = the most (what `mcutl plan` recommends first when it has no
    #: accuracy measured; the Rep-Net paper's claim ranks Rep-Net first)
    capability: int = 50
    #: what to try when the step does not fit: (option text, overrides) pairs; an item
    #: is offered only after planning shows that it lowers the total on that model
    fit_advice: tuple[tuple[str, dict[str, Any]], ...] = ()
    #: option overrides that `mcutl plan` tries and `compile` falls back to when the
    #: defaults do not fit, from the most capable to the smallest ({} = the defaults);
    #: or a function of the quantised model and --cut giving them
    sizes: tuple[dict[str, Any], ...] | Callable[[Graph, str | None], list[dict[str, Any]]] = (
        {},)
    #: the learning rate `compile` gives the build when none is asked for: with `mcutl
    #: train`'s default recipe (mean of 8, cosine decay) the best or near it in the
    #: examples' tables (examples/*/results.md) and stable on tests/test_defaults.py
    lr: float = 0.1

    def sizes_for(self, graph: Graph, cut: str | None) -> list[dict[str, Any]]:
        return list(self.sizes(graph, cut) if callable(self.sizes) else self.sizes)

    def options(self) -> list[dataclasses.Field[Any]]:
        """The spec's fields that the CLI exposes (``metadata["cli"]`` not False)."""
        return [f for f in dataclasses.fields(self.spec) if f.metadata.get("cli", True)]

    def make_spec(self, values: dict[str, Any]) -> Any:
        """A spec from option values (None: the field's default)."""
        return self.spec(**{k: v for k, v in values.items() if v is not None})


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} registered twice")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        known = ", ".join(sorted(METHODS))
        raise UnknownMethodError(f"--method {name!r}: known methods are {known} (or omit "
                                 "--method to compile the frozen backbone for inference)"
                                 ) from None
