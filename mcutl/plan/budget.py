"""Does a build fit the target's SRAM? Decided from the plan, before any firmware is built."""

from __future__ import annotations

from mcutl.errors import McutlError
from mcutl.plan.arena import ArenaPlanner
from mcutl.targets import Target

#: static RAM of the runtime outside the plan: server frame buffers, UART ring, counters
RUNTIME_STATIC_BYTES = 3400


class MemoryBudgetError(McutlError):
    """The build does not fit the target's SRAM."""


def training_static_bytes(param_count: int, opt_state_count: int) -> int:
    """Parameters + gradients + optimizer state (float32) and the runtime's own state."""
    return 4 * (2 * param_count + opt_state_count) + RUNTIME_STATIC_BYTES


def check_budget(target: Target, plan: ArenaPlanner, static: int, *, what: str,
                 static_what: str, advice: str = "") -> dict[str, int]:
    """arena + static + stack against the target's SRAM; MemoryBudgetError naming the
    largest arena buffers if it does not fit. Returns the totals for plan.json."""
    if target.memory is None:
        return {}
    arena = plan.arena_size()
    stack = target.memory.stack_bytes
    total = arena + static + stack
    if total > target.memory.sram_bytes:
        largest = sorted(plan.buffers, key=lambda b: -b.size)[:5]
        names = ", ".join(f"{b.name} {b.size} B" for b in largest)
        raise MemoryBudgetError(
            f"{what} needs {total} B of SRAM on {target.name} but it has "
            f"{target.memory.sram_bytes} B: arena {arena} B + {static_what} {static} B + "
            f"stack {stack} B. Largest arena buffers: {names}. "
            f"Lower it with {advice + ', or ' if advice else ''}a target with more SRAM "
            "(`mcutl targets`); `mcutl plan` compares every method.")
    return {"arena": arena, "static": static, "stack": stack, "total": total}
