"""Top-K selection whose result does not depend on how queries were batched.

A row's scores from a batched matrix product differ in the last bits with the batch's shape (BLAS and
attention kernels pick different blockings), so a plain `topk` could swap the K-th and (K+1)-th items
between an unsharded run and a sharded one. Two rules make the chosen set a function of the query alone:

1. Only the *set* of the top K matters (augmentation samples from it uniformly), so it is returned in
   ascending index order rather than by score; swaps inside the set change nothing.
2. A row whose K-th and (K+1)-th scores are closer than `tolerance` is *ambiguous*: the caller recomputes
   it alone with a fixed-shape computation (`canonical_top_k` on its scores), where ties break by index.

For a row that is not ambiguous, every run whose rounding error stays below tolerance / 2 picks the same
set as the canonical computation, so runs agree whichever path each of them took for that row.
"""

from __future__ import annotations

import torch


def batched_top_k(scores: torch.Tensor, k: int, tolerance: float) -> tuple[list[list[int]], list[int]]:
    """Top-`k` indices of each row of `scores`, and the rows too close to call.

    Args:
        scores: (B, N) float scores; `-inf` marks entries that must never be chosen.
        k: how many indices per row; fewer come back where a row has fewer finite scores.
        tolerance: rows whose k-th and (k+1)-th scores differ by less are reported as ambiguous.

    Returns:
        (indices, ambiguous): per row, the chosen indices in ascending order (a list of B lists), and the
        row numbers whose set needs `canonical_top_k` instead.
    """
    take = min(k + 1, scores.shape[1])
    values, indices = scores.float().topk(take, dim=1)  # (B, take), best first
    ambiguous: list[int] = []
    if take > k:
        gap = values[:, k - 1] - values[:, k]  # nan where both are -inf: fewer than k candidates, no tie
        ambiguous = torch.nonzero(gap < tolerance).flatten().tolist()
    finite = torch.isfinite(values[:, :k])
    chosen = [
        sorted(row_indices[row_finite].tolist()) for row_indices, row_finite in zip(indices[:, :k], finite, strict=True)
    ]
    return chosen, ambiguous


def canonical_top_k(scores: torch.Tensor, k: int) -> list[int]:
    """Top-`k` indices of one row of (N,) `scores`, ties broken by lower index, in ascending order."""
    order = torch.sort(scores.double(), descending=True, stable=True).indices[:k]
    return sorted(i for i in order.tolist() if torch.isfinite(scores[i]))
