"""What an exporter sends in one go: the rows read after its cursor, grouped by series in time
order, and the halving that isolates the samples a receiver refuses.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from infrawatch.export.cursor import Row

# A series' rows to send, in time order: the rows as read (no per-sample copies), converted to
# the protocol's units by the encoder as it writes them.
Points = list[Row]
Group = tuple[int, Any, Points]  # series id, prepared series, its points


@dataclass(slots=True)
class Batch:
    """Rows read after the cursor, ready to send; `last_seq` is where the cursor moves."""

    last_seq: int
    groups: list[Group]
    samples: int = 0  # points to send
    lost: int = 0  # too old (past retention) or their series is gone
    out_of_order: int = 0  # older than what an ordered receiver has: rejected unsent
    sent: int = 0
    rejected: int = 0
    accepted_until: dict[int, tuple[int, float]] = field(default_factory=dict)


def split_half(groups: list[Group], total: int) -> tuple[list[Group], list[Group]]:
    """Two halves by sample count (a series may be cut: its earlier points go first)."""
    half = total // 2
    left: list[Group] = []
    right: list[Group] = []
    count = 0
    for sid, prep, points in groups:
        if count >= half:
            right.append((sid, prep, points))
        elif count + len(points) <= half:
            left.append((sid, prep, points))
        else:
            cut = half - count
            left.append((sid, prep, points[:cut]))
            right.append((sid, prep, points[cut:]))
        count += len(points)
    return left, right


TS = operator.itemgetter(2)  # of a Row


def in_time_order(points: Points) -> Points:
    """`points` sorted by time, keeping the last-written value of a repeated timestamp."""
    times = list(map(TS, points))
    if all(map(operator.lt, times, times[1:])):
        return points  # the usual case: a series' rows arrive in time order
    points.sort(key=TS)  # stable: equal timestamps stay in the order written
    out: Points = []
    for point in points:
        if out and out[-1][2] == point[2]:
            out[-1] = point
        else:
            out.append(point)
    return out
