import pytest
import torch

from supernas.errors import ConfigError
from supernas.train import cosine_with_warmup, exp_constant_end, load_checkpoint, save_checkpoint


def test_cosine_warms_up_linearly_then_falls_to_its_final_fraction():
    schedule = cosine_with_warmup(0.5, total_steps=100, warmup_steps=10, final_frac=0.1)
    warmup = [schedule.lr(step) for step in range(10)]
    assert warmup == pytest.approx([0.05 * (step + 1) for step in range(10)])
    assert schedule.lr(10) == pytest.approx(0.5)  # the peak
    assert schedule.lr(55) == pytest.approx(0.5 * 0.55)  # half way down the cosine
    assert schedule.lr(100) == pytest.approx(0.05)
    assert schedule.lr(1000) == pytest.approx(0.05)
    decay = [schedule.lr(step) for step in range(10, 101)]
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False))


def test_cosine_without_warmup_starts_at_the_peak_and_ends_at_zero():
    schedule = cosine_with_warmup(2.0, total_steps=50, warmup_steps=0)
    assert schedule.lr(0) == 2.0
    assert schedule.lr(50) == pytest.approx(0.0, abs=1e-12)


def test_exp_constant_end_decays_then_holds_the_floor():
    schedule = exp_constant_end(0.2, decay=0.97, decay_every_steps=24, warmup_steps=5)
    assert [schedule.lr(step) for step in range(5)] == pytest.approx([0.04, 0.08, 0.12, 0.16, 0.2])
    assert schedule.lr(5 + 24) == pytest.approx(0.2 * 0.97)
    assert schedule.lr(5 + 48) == pytest.approx(0.2 * 0.97**2)
    floor_step = next(step for step in range(100_000) if schedule(step) == 0.05)
    assert schedule.lr(floor_step - 1) > 0.2 * 0.05
    assert all(schedule(step) == 0.05 for step in range(floor_step, floor_step + 20_000))


def test_lambda_lr_follows_the_schedule_and_resumes_from_a_checkpoint(tmp_path):
    schedule = cosine_with_warmup(0.3, total_steps=20, warmup_steps=4)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=schedule.lr0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    seen = []
    for _ in range(8):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([schedule.lr(step) for step in range(8)])

    save_checkpoint(tmp_path / "s.pt", {"scheduler": scheduler.state_dict()})
    other = cosine_with_warmup(0.3, total_steps=999, warmup_steps=0)  # overwritten on load
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=other.lr0)
    resumed = torch.optim.lr_scheduler.LambdaLR(optimizer, other)
    resumed.load_state_dict(load_checkpoint(tmp_path / "s.pt")["scheduler"])
    assert other == schedule
    assert resumed.get_last_lr() == pytest.approx([schedule.lr(8)])


@pytest.mark.parametrize(
    "build",
    [
        lambda: cosine_with_warmup(0.1, total_steps=10, warmup_steps=11),
        lambda: cosine_with_warmup(0.1, total_steps=10, warmup_steps=0, final_frac=1.5),
        lambda: exp_constant_end(0.1, decay=1.2, decay_every_steps=10),
        lambda: exp_constant_end(0.1, decay=0.9, decay_every_steps=0),
        lambda: exp_constant_end(0.1, decay=0.9, decay_every_steps=10, floor_frac=-0.1),
    ],
)
def test_impossible_schedules_are_config_errors(build):
    with pytest.raises(ConfigError):
        build()
