"""The rooms plot of the benchmark suite: delivery latency and throughput against room size.

Kept apart from ``loadtest.bench`` so that matplotlib (a test extra, heavy to import) is only
loaded when a plot is asked for, and with the Agg backend, which needs no display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_rooms(rooms: dict[str, Any], path: Path) -> None:
    """Write a PNG of two panels from a ``loadtest.bench_room`` report: delivery latency
    p50/p99 against viewers (fan-out sizes, and the storm as its own point), and frames/s
    of the server against the bare broadcaster at the same sizes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = rooms.get("fanout", {}).get("sizes", [])
    viewers = [row["viewers"] for row in sizes]
    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")

    latency.plot(viewers, [row["server_p50_ms"] for row in sizes], "o-", label="fan-out p50")
    latency.plot(viewers, [row["server_p99_ms"] for row in sizes], "s-", label="fan-out p99")
    storm = rooms.get("storm")
    if storm:
        latency.plot([storm["viewers"]], [storm["latency_p50_ms"]], "D", color="tab:green", label="storm p50")
        latency.plot([storm["viewers"]], [storm["latency_p99_ms"]], "^", color="tab:red", label="storm p99")
    latency.set(
        title="Gift-to-viewer delivery latency",
        xlabel="viewers in the room",
        ylabel="ms",
        ylim=(0, None),
    )
    latency.grid(alpha=0.3)
    latency.legend()

    throughput.plot(viewers, [row["server_frames_per_s"] for row in sizes], "o-", label="server")
    throughput.plot(viewers, [row["bare_frames_per_s"] for row in sizes], "s--", label="bare broadcast()")
    throughput.set(
        title="Fan-out frames delivered per second",
        xlabel="viewers in the room",
        ylabel="frames/s",
        ylim=(0, None),
    )
    throughput.grid(alpha=0.3)
    throughput.legend()
    for axes in (latency, throughput):
        axes.set_xlim(0, None)

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
