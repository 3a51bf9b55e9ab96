"""Real model, real data: distillation beats training the same student without it.

Teacher: the packaged MiniLM (6 layers, 384 wide) fine-tuned on the first 2000 SST-2 training sentences.
Student: half its depth and width, from random initialisation (no general distillation here), distilled in
two stages on the same 2000 sentences, against the same student trained on their labels for as many steps.
Scores are SST-2 dev accuracy (872 sentences, balanced: chance is about 0.51).
"""

import pytest

from tinybert_core.distiller import TrainConfig
from tinybert_core.evaluation import evaluate_model
from tinybert_core.glue_data import load_glue_split
from tinybert_core.glue_tasks import get_task
from tinybert_core.models import StudentShape, load_tokenizer
from tinybert_core.recipe import encode_task, finetune, finetune_teacher, student_for_task, task_distill

TRAIN_EXAMPLES = 2000
STAGE1_EPOCHS, STAGE2_EPOCHS = 8, 3


@pytest.mark.slow
def test_distilled_student_beats_the_undistilled_one_on_sst2(glue_dir, tmp_path):
    task = get_task("sst2")
    tokenizer = load_tokenizer("minilm-l6")
    train = encode_task(load_glue_split(task, glue_dir, "train", limit=TRAIN_EXAMPLES), tokenizer, task, 64)
    dev = encode_task(load_glue_split(task, glue_dir, "dev"), tokenizer, task, 64)

    def config(epochs: float, lr: float) -> TrainConfig:
        return TrainConfig(num_epochs=epochs, batch_size=32, learning_rate=lr, save_every=0, seed=0)

    teacher = finetune_teacher("minilm-l6", task, train, None, config(3, 1e-4), tmp_path / "teacher").student
    teacher_accuracy = evaluate_model(teacher, dev, task)["accuracy"]

    shape = StudentShape(num_layers=3, hidden_size=192, intermediate_size=768, num_heads=12)
    student = student_for_task(task, teacher, None, shape, seed=0)
    task_distill(teacher, student, task, train, None, config(STAGE1_EPOCHS, 1e-3), config(STAGE2_EPOCHS, 3e-4), tmp_path / "distill")
    distilled = evaluate_model(student, dev, task)["accuracy"]

    baseline = student_for_task(task, teacher, None, shape, seed=0)
    finetune(baseline, task, train, None, config(STAGE1_EPOCHS + STAGE2_EPOCHS, 3e-4), tmp_path / "baseline")
    undistilled = evaluate_model(baseline, dev, task)["accuracy"]

    print(f"SST-2 dev accuracy: teacher {teacher_accuracy:.3f}, distilled {distilled:.3f}, undistilled {undistilled:.3f}")
    assert teacher_accuracy > 0.78
    assert distilled > 0.65  # clearly above chance
    assert distilled >= undistilled + 0.015
