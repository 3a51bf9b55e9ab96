from datasets import Dataset

from tinybert_core.saved_datasets import save_dataset


def _built(rows: list[str], how: str) -> Dataset:
    # `how` stands for what `datasets` fingerprints: absolute paths, file times, or a random id with caching off.
    return Dataset.from_dict({"text": rows}).map(lambda row: {"length": len(row["text"])}, new_fingerprint=how)


def test_same_rows_give_the_same_bytes_and_other_rows_do_not(tmp_path):
    first, second, other = _built(["a b", "c"], "run-1"), _built(["a b", "c"], "run-2"), _built(["a b", "d"], "run-1")
    for name, dataset in (("first", first), ("second", second), ("other", other)):
        save_dataset(dataset, tmp_path / name)
    state = {name: (tmp_path / name / "state.json").read_text() for name in ("first", "second", "other")}
    assert state["first"] == state["second"] != state["other"]
    assert Dataset.load_from_disk(str(tmp_path / "second")).to_dict() == {"text": ["a b", "c"], "length": [3, 1]}
