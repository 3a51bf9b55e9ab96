"""The exported student as an MLflow pyfunc model, logged "from code" (no pickle): texts in, one prediction per text.

    model = mlflow.pyfunc.load_model("models:/tinybert-student@candidate")
    model.predict("a gripping, funny film")                            # one text
    model.predict(["a gripping, funny film", "it drags"])              # a list of texts
    model.predict({"text_a": ["a gripping, funny film", "it drags"]})  # a dict of columns, or a DataFrame
    model.predict([["A man sleeps.", "Nobody sleeps."]])              # pair tasks: [a, b] pairs, or text_a + text_b

The answer is a DataFrame with one row per input row: `label` (the task's label name) and `score` (its
probability), or only `score` for a regression task. Input that cannot be read exactly (an empty text, an
unknown column, pairs of unequal length) raises ServingInputError instead of being guessed at.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import set_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer

# Key of the logged model_config naming the text columns ("text_a"[, "text_b"]) the model reads.
TEXT_COLUMNS = "text_columns"
BATCH_SIZE = 64  # texts per forward pass: bounds memory on large inputs


class ServingInputError(ValueError):
    """The input does not have the shape this model reads; the message says what was expected."""


def input_columns(model_input: object, text_columns: Sequence[str]) -> dict[str, list[str]]:
    """Any accepted input as one list of texts per text column, all of one length (one entry per prediction).

    Accepted: a string or a list of strings (one-text tasks), a list of [a, b] pairs (pair tasks), a dict of
    lists or a DataFrame with exactly the columns `text_columns`.
    """
    text_columns = tuple(text_columns)
    if isinstance(model_input, pd.DataFrame):
        columns = _named_columns({str(c): model_input[c].tolist() for c in model_input.columns}, text_columns, "DataFrame")
    elif isinstance(model_input, Mapping):
        columns = _named_columns(
            {str(k): [v] if isinstance(v, str) else v for k, v in model_input.items()}, text_columns, "dict"
        )
    elif isinstance(model_input, str):
        columns = _positional([model_input], text_columns)
    elif isinstance(model_input, (Sequence, np.ndarray, pd.Series)):
        columns = _positional(list(model_input), text_columns)
    else:
        raise ServingInputError(f"cannot read input of type {type(model_input).__name__}; {_expected(text_columns)}")
    for column, texts in columns.items():
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise ServingInputError(f"{column} row {row}: expected a string, got {type(text).__name__} {text!r}")
            if not text.strip():
                raise ServingInputError(f"{column} row {row}: the text is empty")
    return columns


def _named_columns(given: dict[str, object], text_columns: tuple[str, ...], kind: str) -> dict[str, list]:
    if set(given) != set(text_columns):
        missing, extra = sorted(set(text_columns) - set(given)), sorted(set(given) - set(text_columns))
        raise ServingInputError(
            f"{kind} columns {sorted(given)} do not match the model's {list(text_columns)}"
            + (f" (missing {missing})" if missing else "") + (f" (unknown {extra})" if extra else "")
        )
    columns = {}
    for name in text_columns:
        values = given[name]
        if not isinstance(values, (Sequence, np.ndarray, pd.Series)) or isinstance(values, (str, bytes)):
            raise ServingInputError(f"{kind} column {name!r}: expected a list of strings, got {type(values).__name__}")
        columns[name] = list(values)
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ServingInputError(f"{kind} columns have different lengths {lengths}: each row needs one text per column")
    if not next(iter(lengths.values())):
        raise ServingInputError(f"{kind} has no rows")
    return columns


def _positional(rows: list, text_columns: tuple[str, ...]) -> dict[str, list]:
    if not rows:
        raise ServingInputError(f"the input is empty; {_expected(text_columns)}")
    if len(text_columns) == 1:
        if any(not isinstance(row, str) for row in rows):
            raise ServingInputError(f"this model reads one text per example; {_expected(text_columns)}")
        return {text_columns[0]: rows}
    for i, row in enumerate(rows):
        if isinstance(row, str) or not isinstance(row, (Sequence, np.ndarray)) or len(row) != len(text_columns):
            raise ServingInputError(f"row {i} is {row!r}; {_expected(text_columns)}")
    return {column: [row[j] for row in rows] for j, column in enumerate(text_columns)}


def _expected(text_columns: tuple[str, ...]) -> str:
    if len(text_columns) == 1:
        return f'give a string, a list of strings, or a dict/DataFrame with the column "{text_columns[0]}"'
    a, b = text_columns
    return f'give a list of [{a}, {b}] pairs, or a dict/DataFrame with the columns "{a}" and "{b}"'


class TextClassifier(mlflow.pyfunc.PythonModel):
    """Wraps the exported Hugging Face folder (artifact "model"); model_config names the text columns."""

    def load_context(self, context) -> None:
        self.text_columns = tuple(context.model_config[TEXT_COLUMNS])
        self.tokenizer = AutoTokenizer.from_pretrained(context.artifacts["model"])
        self.model = AutoModelForSequenceClassification.from_pretrained(context.artifacts["model"]).eval()

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        columns = input_columns(model_input, self.text_columns)
        texts = [columns[c] for c in self.text_columns]
        n_rows = len(texts[0])
        logits = []
        with torch.inference_mode():
            for start in range(0, n_rows, BATCH_SIZE):
                batch = [column[start:start + BATCH_SIZE] for column in texts]
                inputs = self.tokenizer(*batch, truncation=True, padding=True, return_tensors="pt")
                logits.append(self.model(**inputs).logits)
        logits = torch.cat(logits)  # (n_rows, num_labels)
        if self.model.config.problem_type == "regression":
            return pd.DataFrame({"score": logits[:, 0].tolist()})
        probs = logits.softmax(-1)
        labels = [self.model.config.id2label[int(i)] for i in probs.argmax(-1)]
        return pd.DataFrame({"label": labels, "score": probs.max(-1).values.tolist()})


set_model(TextClassifier())
