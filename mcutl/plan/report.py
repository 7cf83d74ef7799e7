"""plan.json and plan.png of a build: every buffer's offset, size and lifetime, the
arena's peak beside its lower bound, and the totals against the target's SRAM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mcutl.plan.arena import ArenaPlanner
from mcutl.targets import Target
from mcutl.toolchain import Firmware


def plan_json(plan: ArenaPlanner, target: Target, budget: dict[str, int], static: int,
              fws: dict[str, Firmware], steps: int, forward_calls: int,
              extra: dict[str, Any]) -> dict[str, Any]:
    """``steps``: the program's length (calls or nodes); ``extra``: what the kind of build
    adds (parameters, probe points, optimizer) before the tensor list."""
    fw = fws.get("board")
    size = fw.size.to_dict() if fw is not None and fw.size is not None else None
    return {
        "peak_bytes": plan.arena_size(),
        "lower_bound_bytes": plan.lower_bound(),
        "peak_over_bound": round(plan.arena_size() / max(1, plan.lower_bound()), 4),
        "static_bytes": static,
        "stack_bytes": target.memory.stack_bytes if target.memory else None,
        "stack_note": "reserved by the linker script (an upper bound the link enforces); "
                      "STATS reports the measured high-water mark on the device",
        "sram_bytes": target.memory.sram_bytes if target.memory else None,
        "total_bytes": budget.get("total"),
        "firmware_size": size,
        **extra,
        "steps": steps,
        "forward_calls": forward_calls,
        "tensors": [
            {"name": b.name, "offset": b.offset, "size": b.size, "first": b.first,
             "last": b.last}
            for b in plan.buffers
        ],
    }


def plot_plan(plan: dict[str, Any], path: Path, what: str = "training step") -> None:
    """plan.png: bytes live at each call of the step, and the arena's blocks over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tensors = plan["tensors"]
    steps = plan["steps"] + 1
    live = np.zeros(steps)
    for t in tensors:
        live[t["first"]: t["last"] + 1] += t["size"]
    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    a.plot(live / 1024, drawstyle="steps-post")
    a.axhline(plan["peak_bytes"] / 1024, color="r", ls="--", label="arena (planned)")
    if plan["forward_calls"] < plan["steps"]:
        a.axvline(plan["forward_calls"], color="gray", ls=":", label="forward | backward")
    a.set_ylabel("KiB live")
    a.legend()
    a.set_title(f"{what}: arena {plan['peak_bytes']} B, lower bound "
                f"{plan['lower_bound_bytes']} B")
    for t in tensors:
        color = "tab:blue" if t["name"].startswith("i8:") else (
            "tab:green" if t["name"].startswith("m:") else "tab:orange")
        b.broken_barh([(t["first"], t["last"] - t["first"] + 1)],
                      (t["offset"] / 1024, max(t["size"], 1) / 1024), color=color, alpha=0.7)
    b.set_xlabel("call of the step" if plan["forward_calls"] < plan["steps"] else "node")
    b.set_ylabel("arena offset (KiB)")
    b.set_title("blocks: int8 (blue), float32 (orange), masks (green)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
