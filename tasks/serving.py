"""The exported student as an MLflow pyfunc model, logged "from code" (no pickle): text in, label out.

    model = mlflow.pyfunc.load_model("models:/tinybert-student@candidate")
    model.predict(pd.DataFrame({"text_a": ["a gripping, funny film"]}))
"""

from __future__ import annotations

import mlflow
import pandas as pd
import torch
from mlflow.models import set_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer


class TextClassifier(mlflow.pyfunc.PythonModel):
    """Wraps the exported Hugging Face folder (artifact "model"): columns text_a[, text_b] -> label, score."""

    def load_context(self, context) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(context.artifacts["model"])
        self.model = AutoModelForSequenceClassification.from_pretrained(context.artifacts["model"]).eval()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):
            texts = [model_input[c].astype(str).tolist() for c in ("text_a", "text_b") if c in model_input]
        else:
            texts = [[str(t) for t in model_input]]
        inputs = self.tokenizer(*texts, truncation=True, padding=True, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(**inputs).logits
        if self.model.config.problem_type == "regression":
            return pd.DataFrame({"score": logits[:, 0].tolist()})
        probs = logits.softmax(-1)
        labels = [self.model.config.id2label[int(i)] for i in probs.argmax(-1)]
        return pd.DataFrame({"label": labels, "score": probs.max(-1).values.tolist()})


set_model(TextClassifier())
