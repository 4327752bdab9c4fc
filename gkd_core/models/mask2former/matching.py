"""Optimal one-to-one assignment (Hungarian matching) in NumPy, no SciPy needed.

``linear_sum_assignment`` solves the rectangular assignment problem with the shortest augmenting
path method of Jonker and Volgenant in the form given by Crouse ("On implementing 2D rectangular
assignment algorithms", IEEE TAES 2016; the algorithm behind ``scipy.optimize``): one Dijkstra
search per row over reduced costs, with dual variables kept feasible, then an augmentation along
the found path. Each search step is vectorised over the columns, so the cost is O(r^2 c) NumPy
work for r <= c. Mask2Former's problems are tiny (<= 100 queries x a few dozen classes present).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def linear_sum_assignment(cost: npt.ArrayLike) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Minimum-cost assignment of rows to columns; every row (or every column, if fewer) is assigned.

    Args:
        cost: a 2-D array; NaN and infinite entries are treated as very expensive, not forbidden.

    Returns:
        ``(rows, cols)`` index arrays, sorted by row, with ``cost[rows, cols].sum()`` minimal
        (SciPy's contract).
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, got shape {c.shape}")
    if c.size == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty.copy()
    finite = np.isfinite(c)
    if not finite.all():
        # A huge but finite stand-in keeps the duals finite and still avoids those pairs.
        big = (np.abs(c[finite]).max() if finite.any() else 0.0) * 2.0 + 1.0
        c = np.where(finite, c, big * c.size)
    transposed = c.shape[0] > c.shape[1]
    if transposed:
        c = c.T
    col4row = _assign_rows(c)
    rows = np.arange(c.shape[0], dtype=np.intp)
    if transposed:
        order = np.argsort(col4row)
        return col4row[order].astype(np.intp), rows[order]
    return rows, col4row.astype(np.intp)


def _assign_rows(c: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """Column of every row for an ``r x n`` cost with ``r <= n`` (shortest augmenting paths)."""
    nr, nc = c.shape
    u = np.zeros(nr)
    v = np.zeros(nc)
    col4row = np.full(nr, -1, dtype=np.intp)
    row4col = np.full(nc, -1, dtype=np.intp)
    for cur in range(nr):
        # ``remaining`` is the tentative distance of unscanned columns (scanned ones are set to inf).
        shortest = np.full(nc, np.inf)
        remaining = np.full(nc, np.inf)
        path = np.full(nc, -1, dtype=np.intp)
        scanned_cols = np.zeros(nc, dtype=bool)
        scanned_rows = [cur]
        i, min_val, sink = cur, 0.0, -1
        while sink < 0:
            reduced = c[i] - v
            reduced += min_val - u[i]
            better = reduced < remaining
            better &= ~scanned_cols
            remaining[better] = reduced[better]
            path[better] = i
            j = int(remaining.argmin())
            min_val = float(remaining[j])
            shortest[j] = min_val
            remaining[j] = np.inf
            scanned_cols[j] = True
            if row4col[j] < 0:
                sink = j
            else:
                i = int(row4col[j])
                scanned_rows.append(i)
        # Dual update keeps every reduced cost >= 0 and the assigned ones at 0.
        u[cur] += min_val
        for r in scanned_rows[1:]:
            u[r] += min_val - shortest[col4row[r]]
        v[scanned_cols] -= min_val - shortest[scanned_cols]
        # Augment: flip the alternating path ending at the free column ``sink``.
        j = sink
        while True:
            r = int(path[j])
            row4col[j] = r
            col4row[r], j = j, int(col4row[r])
            if r == cur:
                break
    return col4row
