"""Arrow datasets on disk whose bytes depend only on their rows.

DVC hashes stage outputs by content. `datasets` stamps a saved dataset with a fingerprint of how it was made:
random when caching is off (as in the pipeline), or built from absolute paths and file times. A stage rerun
that reproduces the same rows would then look changed, and every stage after it would rerun for nothing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from datasets import Dataset


def save_dataset(dataset: Dataset, path: str | Path) -> None:
    """`Dataset.save_to_disk`, with the fingerprint replaced by a hash of the rows as written."""
    path = Path(path)
    dataset.save_to_disk(str(path))
    digest = hashlib.sha256()
    for arrow_file in sorted(path.glob("*.arrow")):
        with open(arrow_file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    state_file = path / "state.json"
    state = json.loads(state_file.read_text())
    state["_fingerprint"] = digest.hexdigest()[:16]
    state_file.write_text(json.dumps(state, indent=2, sort_keys=True))  # as `datasets` writes it
