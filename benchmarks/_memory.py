"""Peak-memory helpers shared by the benchmarks (Linux /proc interface)."""

from __future__ import annotations


def status_mib(key: str) -> float:
    """A field of /proc/self/status (``VmRSS``, ``VmHWM``, ...) in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{key} not in /proc/self/status")


def reset_peak() -> float:
    """Reset the RSS high-water mark (Linux: write 5 to clear_refs); return the current RSS."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return status_mib("VmRSS")
