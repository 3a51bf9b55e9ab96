"""Top-K sets that batching cannot change: ascending order, near-ties flagged, canonical tie-breaks."""

import torch

from tinybert_core.augment.ranking import batched_top_k, canonical_top_k


def test_batched_top_k_returns_sets_in_index_order_and_flags_near_ties() -> None:
    scores = torch.tensor(
        [
            [0.1, 5.0, 3.0, 4.0, -1.0],  # clear: {1, 3}
            [1.0, 2.0, 1.00001, 0.0, 0.0],  # 2nd and 3rd best within tolerance: the set is unclear
            [float("-inf"), 1.0, float("-inf"), float("-inf"), float("-inf")],  # one finite score only
        ]
    )
    chosen, ambiguous = batched_top_k(scores, k=2, tolerance=1e-3)
    assert chosen[0] == [1, 3]
    assert ambiguous == [1]
    assert chosen[2] == [1]


def test_canonical_top_k_breaks_ties_by_lower_index() -> None:
    scores = torch.tensor([1.0, 3.0, 2.0, 2.0, 2.0, float("-inf")])
    assert canonical_top_k(scores, 3) == [1, 2, 3]
    assert canonical_top_k(scores, 10) == [0, 1, 2, 3, 4]  # -inf never chosen
