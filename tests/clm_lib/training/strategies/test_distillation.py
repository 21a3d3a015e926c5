from __future__ import annotations

import pytest
import torch

from clm_lib.training.data import collate
from clm_lib.training.loop import train_loop
from clm_lib.training.strategies import build_strategies
from clm_lib.training.strategies.distillation import Distillation, distillation_loss
from clm_lib.training.strategy_config import DistillationConfig

from ..helpers import make_context, records


def _logits(seed: int, shape=(2, 6, 50)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


LABELS = torch.tensor([[-100, -100, -100, 4, 7, 1], [-100, -100, 9, 3, -100, -100]])
"""Positions 2-4 of row 0 and 1-2 of row 1 predict labelled tokens."""


@pytest.mark.parametrize("top_k", [0, 5])
def test_loss_vanishes_when_student_equals_teacher_and_is_positive_otherwise(top_k):
    teacher = _logits(0)
    assert float(distillation_loss(teacher.clone(), teacher, LABELS, 2.0, top_k)) == pytest.approx(0.0, abs=1e-5)
    assert float(distillation_loss(_logits(1), teacher, LABELS, 2.0, top_k)) > 0.1


def test_full_loss_is_the_temperature_scaled_kl_on_response_positions():
    student, teacher, t = _logits(1), _logits(0), 2.0
    positions = [(0, 2), (0, 3), (0, 4), (1, 1), (1, 2)]
    kls = [
        torch.nn.functional.kl_div(
            torch.log_softmax(student[r, c] / t, -1),
            torch.log_softmax(teacher[r, c] / t, -1),
            log_target=True,
            reduction="sum",
        )
        for r, c in positions
    ]
    expected = t**2 * sum(kls) / len(kls)
    assert float(distillation_loss(student, teacher, LABELS, t)) == pytest.approx(float(expected), rel=1e-5)
    # Prompt and padding positions do not count.
    changed = student.clone()
    changed[0, 0] += 10
    changed[1, 4] -= 10
    assert float(distillation_loss(changed, teacher, LABELS, t)) == pytest.approx(float(expected), rel=1e-5)


def test_top_k_keeps_the_teachers_best_tokens_plus_one_bucket():
    student, teacher = _logits(1), _logits(0)
    full = float(distillation_loss(student, teacher, LABELS, 1.0))
    assert float(distillation_loss(student, teacher, LABELS, 1.0, top_k=50)) == pytest.approx(full, rel=1e-5)
    coarse = float(distillation_loss(student, teacher, LABELS, 1.0, top_k=3))
    assert 0 < coarse < full  # a coarser partition never shows more divergence (data processing inequality)
    # Outside the teacher's top k only the total mass counts: shuffling the student's tail changes nothing.
    teacher = teacher / 3
    teacher[..., :3] += 6  # tokens 0-2 are the teacher's top 3 everywhere; the tail keeps 0.5-14 % of the mass
    assert set(teacher.topk(3, dim=-1).indices.flatten().tolist()) == {0, 1, 2}
    swapped = student.clone()
    swapped[..., [10, 20]] = student[..., [20, 10]]
    assert float(distillation_loss(swapped, teacher, LABELS, 1.0, top_k=3)) == pytest.approx(
        float(distillation_loss(student, teacher, LABELS, 1.0, top_k=3)), rel=1e-6
    )
    assert float(distillation_loss(swapped, teacher, LABELS, 1.0)) != pytest.approx(
        float(distillation_loss(student, teacher, LABELS, 1.0)), rel=1e-3
    )


def test_no_parent_means_no_teacher_and_no_loss(tiny_cfg, tiny_base):
    ctx = make_context(tiny_cfg, tiny_base, records("routers", 4))
    ctx.base_dir = tiny_base
    distill = Distillation(DistillationConfig(enabled=True))
    distill.before_training(ctx)
    assert distill.teacher is None and distill.extra_loss(ctx, None, None) is None
    assert distill.params()["teacher"] is False


def test_distillation_keeps_the_student_close_to_its_parent(tmp_path, tiny_cfg, tiny_base):
    tiny_cfg.training.max_steps, tiny_cfg.training.batch_size, tiny_cfg.training.warmup_steps = 8, 8, 0
    tiny_cfg.training.distillation.enabled = True
    assert [s.name for s in build_strategies(tiny_cfg)] == ["replay", "distillation"]
    parent = make_context(tiny_cfg, tiny_base, records("routers", 16))
    train_loop(parent, [])
    parent.model.save_pretrained(str(tmp_path / "parent"))
    probe = collate(parent.data["new"], parent.pad_id)

    def divergence(weight: float) -> tuple[float, Distillation]:
        ctx = make_context(tiny_cfg, tiny_base, records("billing", 16))
        ctx.base_dir, ctx.parent_adapter_dir = tiny_base, tmp_path / "parent"
        ctx.model.load_state_dict(parent.model.state_dict())  # the student starts as its parent, as in an update
        distill = Distillation(DistillationConfig(enabled=True, weight=weight, temperature=1.0))
        train_loop(ctx, [distill])
        assert distill.has_teacher and distill.teacher is None  # released after training
        with torch.no_grad():
            loss = distillation_loss(ctx.model(**probe).logits, parent.model(**probe).logits, probe["labels"], 1.0)
        return float(loss), distill

    free, _ = divergence(0.0)
    held, distill = divergence(5.0)
    assert held < 0.5 * free
    assert distill.params()["teacher"] is True and distill.params()["last_loss"] > 0
