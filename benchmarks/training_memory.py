"""Training memory on stm32f405: Rep-Net (compiled plan) vs last-layer-only and fine-tuning
of the last block (formula estimates on the same quantised backbone).

    python benchmarks/training_memory.py [--out results.json]

Rep-Net figures come from the compiled plan (plan.json) and the linked firmware. The two
baselines are not compiled yet (they are later issues); their SRAM is estimated as:
- last layer only: the backbone's int8 inference arena (compiled plan) + float features,
  logits and their gradient + head parameters x 3 (value, gradient, SGD momentum);
- last block: the int8 inference arena + float32 copies of the block's input activations
  that its weight gradients need + 1-bit masks + the two largest float gradients live at
  once (ping-pong) + the block's and the head's parameters x 3 (float32).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.backbones import (  # noqa: E402
    TinyIMU1D,
    TinyMBV2,
    randomize_batchnorm_stats,
    spread_init,
)
from mcutl.compile import compile_training  # noqa: E402
from mcutl.ir.graph import Graph  # noqa: E402
from mcutl.plan.lifetimes import plan_activations  # noqa: E402

MODELS = {"TinyMBV2 (1x28x28)": (TinyMBV2, (1, 1, 28, 28), 10),
          "TinyIMU1D (6x100)": (TinyIMU1D, (1, 6, 100), 4)}


def last_block(g: Graph) -> list[int]:
    """Indices of the last block's nodes and the frozen tail after it: from the input of
    the last residual block (two activation inputs), else the last two weighted layers."""
    from mcutl.methods.repnet import boundaries

    cuts = set(boundaries(g))
    acts = [i for i, n in enumerate(g.nodes)
            if sum(1 for t in n.inputs if t and not g.tensors[t].is_const) == 2]
    weighted = [i for i, n in enumerate(g.nodes)
                if any(t and g.tensors[t].is_const and len(g.tensors[t].shape) >= 2
                       for t in n.inputs)]
    start = weighted[-2] if len(weighted) >= 2 else 0
    if acts:
        skip = [t for t in g.nodes[acts[-1]].inputs if t in cuts]
        if skip:
            start = next(i for i, n in enumerate(g.nodes) if skip[0] in n.outputs) + 1
    return list(range(start, len(g.nodes)))


def estimate(g: Graph, classes: int) -> dict[str, int]:
    plan, _ = plan_activations(g)
    arena = plan.arena_size()
    feat = g.tensors[g.outputs[0]].size
    head = feat * classes + classes
    last_layer = arena + 4 * (feat + 2 * classes) + 12 * head
    idx = last_block(g)
    params = head
    saved = masks = 0
    floats = []
    for i in idx:
        node = g.nodes[i]
        consts = [g.tensors[t] for t in node.inputs if t and g.tensors[t].is_const]
        weights = [t for t in consts if len(t.shape) >= 2]
        if weights:
            params += sum(t.size for t in consts)
            saved += 4 * g.tensors[node.inputs[0]].size
        out = g.tensors[node.outputs[0]]
        masks += (out.size + 7) // 8
        floats.append(4 * out.size)
    floats.sort()
    grads = sum(floats[-2:])
    last_block_bytes = arena + saved + masks + grads + 12 * params
    return {"inference_arena": arena, "last_layer_bytes": last_layer,
            "last_layer_params": head, "last_block_bytes": last_block_bytes,
            "last_block_params": params}


def measure(name: str, folder: Path) -> dict[str, object]:
    cls, shape, classes = MODELS[name]
    model = randomize_batchnorm_stats(spread_init(cls(seed=0))).eval()
    calib = np.random.default_rng(0).random((32, *shape[1:]), dtype=np.float32)
    _, tm, gen, fws = compile_training(model, "stm32f405", folder, num_classes=classes,
                                       calib=calib, input_shape=shape)
    plan = json.loads((folder / "plan.json").read_text())
    size = fws["board"].size
    assert size is not None
    est = estimate(tm.backbone, classes)
    return {
        "model": name,
        "repnet_params": gen.param_count,
        "repnet_arena": plan["peak_bytes"],
        "repnet_lower_bound": plan["lower_bound_bytes"],
        "repnet_data_bss": size.static_ram,
        "repnet_stack_reserved": plan["stack_bytes"],
        "repnet_total": size.static_ram + plan["stack_bytes"],
        **est,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(n, Path(tmp) / str(i)) for i, n in enumerate(MODELS)]
    t = Table(title="training SRAM on stm32f405 (bytes)")
    for c in ("model", "Rep-Net params", "arena", "bound", ".data+.bss", "stack", "Rep-Net total",
              "last layer (est.)", "last block (est.)", "last-block params"):
        t.add_column(c)
    for r in rows:
        t.add_row(str(r["model"]), f"{r['repnet_params']:,}", f"{r['repnet_arena']:,}",
                  f"{r['repnet_lower_bound']:,}", f"{r['repnet_data_bss']:,}",
                  f"{r['repnet_stack_reserved']:,}", f"{r['repnet_total']:,}",
                  f"{r['last_layer_bytes']:,}", f"{r['last_block_bytes']:,}",
                  f"{r['last_block_params']:,}")
    Console(width=200).print(t)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
