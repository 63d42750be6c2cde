"""Current and peak resident memory of the workers."""

from __future__ import annotations

import math
from typing import Any


def _memory_probe() -> dict[str, float]:
    try:
        with open("/proc/self/status") as fh:
            vals = {ln.split(":")[0]: int(ln.split()[1]) / 1024.0 for ln in fh if ln[:2] == "Vm"}
        return {"rss_mib": vals["VmRSS"], "peak_mib": vals["VmHWM"]}
    except (OSError, KeyError, ValueError, IndexError):
        import psutil

        return {"rss_mib": psutil.Process().memory_info().rss / 2**20, "peak_mib": math.nan}


def _reset_peak_probe() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def worker_memory(client: Any) -> dict[str, dict[str, float]]:
    """``{worker address: {"rss_mib": current, "peak_mib": high-water mark}}`` (Linux ``VmHWM``;
    elsewhere ``nan`` for the peak)."""
    return dict(client.run(_memory_probe))


def reset_peak_memory(client: Any) -> dict[str, bool]:
    """Reset every worker's peak-RSS mark (Linux ``/proc/self/clear_refs``).

    Returns ``{worker address: done}``, ``False`` where the platform does not allow it."""
    return dict(client.run(_reset_peak_probe))
