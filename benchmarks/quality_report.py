"""The quality report: the full TinyBERT recipe on real GLUE tasks, with the paper's ablations, in one run.

    python benchmarks/quality_report.py --glue-dir ../shared/data/glue [--profile cpu|gpu] [--tasks sst2 mrpc cola stsb]

Teacher: the packaged MiniLM (6 layers, 384 wide) fine-tuned on each task. Student: half its depth and width
(3 layers, 192 wide, FFN 768, 12 heads). Per task it prints the teacher's and the student's dev score, the
retention (student / teacher), the same student trained on labels without distillation, and the ablations:
no general distillation, no task stage 1, no data augmentation. Scores are the GLUE task scores x100
(accuracy; MCC for CoLA; mean of F1 and accuracy for MRPC; mean of Pearson and Spearman for STS-B).

Profiles: "cpu" caps training sets and epochs so the whole report runs in about an hour on 2 cores (47 min
measured); "gpu" uses the full training sets and the paper's task epoch counts (run it on a GPU machine). Both
run general distillation for 10 epochs: the paper's 3 epochs are over English Wikipedia (2.5B words); the
WikiText-2 valid and test files here hold 0.46M; at one epoch (125 steps) the cpu profile's STS-B student lost 11 points.
Augmentation uses GloVe neighbours for every word (the packaged teacher has no masked-LM head); pass
--masked-lm bert-base-uncased where a hub is reachable for the paper's masked-LM candidates.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tinybert_core.augment import AugmentConfig, build_augmenter
from tinybert_core.corpus import prepare_corpus
from tinybert_core.distiller import TrainConfig
from tinybert_core.evaluation import evaluate_model
from tinybert_core.glue_data import load_glue_split
from tinybert_core.glue_metrics import SCORE
from tinybert_core.glue_tasks import get_task
from tinybert_core.models import StudentShape, load_tokenizer
from tinybert_core.general_student import save_projections
from tinybert_core.recipe import (
    encode_task, finetune, finetune_teacher, general_distill, projections_for_task, student_for_task, task_distill,
)

from table import print_table

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
TEACHER = "minilm-l6"
STUDENT = StudentShape(num_layers=3, hidden_size=192, intermediate_size=768, num_heads=12)
VARIANTS = ("student", "no distillation", "no general distillation", "no task stage 1", "no augmentation")


@dataclass
class Profile:
    train_examples: int | None  # per task; None: the full training set
    corpus_sequences: int | None
    general_epochs: float
    teacher_epochs: float
    n_aug: int
    stage1_epochs: float
    stage2_epochs: float


PROFILES = {
    "cpu": Profile(train_examples=1000, corpus_sequences=4000, general_epochs=10, teacher_epochs=3, n_aug=4, stage1_epochs=4, stage2_epochs=3),
    "gpu": Profile(train_examples=None, corpus_sequences=None, general_epochs=10, teacher_epochs=3, n_aug=20, stage1_epochs=10, stage2_epochs=3),
}


def config(epochs: float, learning_rate: float, seed: int, batch_size: int = 32) -> TrainConfig:
    return TrainConfig(num_epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, save_every=0, seed=seed)


def run_task(name: str, args, profile: Profile, general_dir: Path, work: Path, tokenizer, augmenter) -> dict:
    task = get_task(name)
    max_len = task.max_seq_length
    raw_train = load_glue_split(task, args.glue_dir, "train", limit=profile.train_examples)
    dev = encode_task(load_glue_split(task, args.glue_dir, task.dev_splits[0]), tokenizer, task, max_len)
    train = encode_task(raw_train, tokenizer, task, max_len)
    augmented = encode_task(augmenter.augment_dataset(raw_train), tokenizer, task, max_len)

    teacher = finetune_teacher(TEACHER, task, train, None, config(profile.teacher_epochs, 1e-4, args.seed), work / name / "teacher").student
    scores = {"teacher": evaluate_model(teacher, dev, task)[SCORE]}
    stage1 = config(profile.stage1_epochs, 1e-3, args.seed)
    stage2 = config(profile.stage2_epochs, 3e-4, args.seed)

    def distilled(variant: str, general: bool, with_stage1: bool, data) -> float:
        start = general_dir if general else None
        student = student_for_task(task, teacher, start, STUDENT, args.seed)
        projections = projections_for_task(start, student, teacher)  # general distillation's W_e/W_h
        task_distill(teacher, student, task, data, None, stage1 if with_stage1 else None, stage2, work / name / variant,
                     projections=projections)
        return evaluate_model(student, dev, task)[SCORE]

    scores["student"] = distilled("student", True, True, augmented)
    scores["no general distillation"] = distilled("no_gd", False, True, augmented)
    scores["no task stage 1"] = distilled("no_stage1", True, False, augmented)
    scores["no augmentation"] = distilled("no_da", True, True, train)
    # The same student trained on the labels alone, for as many epochs as the two distillation stages.
    baseline = student_for_task(task, teacher, None, STUDENT, args.seed)
    finetune(baseline, task, train, None, config(profile.stage1_epochs + profile.stage2_epochs, 3e-4, args.seed), work / name / "baseline")
    scores["no distillation"] = evaluate_model(baseline, dev, task)[SCORE]
    scores["train_examples"] = len(train)
    scores["augmented_examples"] = len(augmented)
    return scores


def print_report(results: dict[str, dict]) -> None:
    header = ("task", "teacher", *VARIANTS, "retention", "vs no-distill")
    rows = []
    for task, s in results.items():
        rows.append((task, *(f"{100 * s[k]:.1f}" for k in ("teacher", *VARIANTS)),
                     f"{100 * s['student'] / s['teacher']:.1f}%", f"{100 * (s['student'] - s['no distillation']):+.1f}"))
    mean = {k: sum(s[k] for s in results.values()) / len(results) for k in ("teacher", *VARIANTS)}
    rows.append(("average", *(f"{100 * mean[k]:.1f}" for k in ("teacher", *VARIANTS)),
                 f"{100 * sum(s['student'] / s['teacher'] for s in results.values()) / len(results):.1f}%",
                 f"{100 * (mean['student'] - mean['no distillation']):+.1f}"))
    print_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue-dir", type=Path, default=SHARED / "glue")
    parser.add_argument("--corpus", type=Path, nargs="+", default=[SHARED / "corpus" / "wikitext2_raw_valid.txt", SHARED / "corpus" / "wikitext2_raw_test.txt"])
    parser.add_argument("--glove", type=Path, default=SHARED / "glove" / "glove.6B.100d.top2604.txt")
    parser.add_argument("--masked-lm", default=None, help="fill-mask model for single-piece words (needs a hub or a local folder)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mrpc", "cola", "stsb"])
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "quality_report")
    parser.add_argument("--out", type=Path, default=None, help="also write the scores as JSON here")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    profile = PROFILES[args.profile]
    started = time.time()
    tokenizer = load_tokenizer(TEACHER)

    # General distillation once, shared by every task (WikiText-2, the general corpus at hand).
    corpus = prepare_corpus(args.corpus, tokenizer, args.work_dir / "corpus", max_seq_length=128, max_sequences=profile.corpus_sequences)
    general = general_distill(TEACHER, corpus, STUDENT, config(profile.general_epochs, 1e-3, args.seed), args.work_dir / "general")
    general_dir = args.work_dir / "general" / "model"
    general.student.save_pretrained(general_dir)
    save_projections(general.projections, general_dir)

    augmenter = build_augmenter(AugmentConfig(n_aug=profile.n_aug, seed=args.seed), masked_lm=args.masked_lm, vectors=args.glove)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    results = {}
    for name in args.tasks:
        results[name] = run_task(name, args, profile, general_dir, args.work_dir, tokenizer, augmenter)
        print(f"{name}: {json.dumps({k: round(v, 4) for k, v in results[name].items()})}", flush=True)
        if args.out:  # after every task, so a run stopped halfway keeps what it finished
            args.out.write_text(json.dumps({"profile": args.profile, "device": device, "results": results}, indent=2) + "\n")

    print(f"\nprofile {args.profile} on {device}, {time.time() - started:.0f} s; scores x100 on the full dev sets\n")
    print_report(results)


if __name__ == "__main__":
    main()
