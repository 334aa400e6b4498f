"""BigNAS: sandwich rule, detached distillation, zero-init gamma, constant-ending LR, budgets,
BN recalibration, coarse-to-fine selection, sliced deployment (one set of weights on every rank:
`test_contract.py`)."""

import random
from pathlib import Path

import pytest
import torch
from torch import nn

from supernas.api import evaluate, search, select
from supernas.config import from_dict
from supernas.cost.budget import Budget
from supernas.cost.macs import arch_cost
from supernas.errors import BudgetError, ConfigError
from supernas.nn import Supernet
from supernas.nn.supernet import resize
from supernas.recipe import RunConfig, load_run_config, search_schedule
from supernas.space import get_space
from supernas.space.choices import biggest, sample, smallest
from supernas.space.plan import plan
from supernas.space.presets import Stage, stages
from supernas.space.space import HeadSpec, SearchSpace, StemSpec
from supernas.strategies import SearchContext
from supernas.strategies.bignas import BigNAS, residual_blocks, sliced_child
from supernas.strategies.selection import (
    SelectConfig,
    coarse_grid,
    parse_budgets,
    select_children,
)

RECIPE = Path(__file__).parents[2] / "recipes" / "bignas_fmnist.yaml"


def tiny_space() -> SearchSpace:
    """A BigNAS-style tied space small enough for many forwards on 16 px images."""
    micro = dict(expansions=(2, 3), kernel_sizes=(3, 5), min_depth=1)
    rows = [
        Stage(blocks=2, stride=2, out_channels=(8, 12), attentions=(1,), **micro),
        Stage(blocks=2, stride=1, out_channels=(12, 16), attentions=(0,), **micro),
    ]
    return SearchSpace(
        name="tiny_bignas",
        in_channels=1,
        num_classes=4,
        resolutions=(12, 16),
        stem=StemSpec(out_channels=(4, 8), stride=2),
        blocks=stages(rows),
        head=HeadSpec(hidden_channels=(16, 24), dropout=0.2),
        shortcut="always",
        tie_stages=True,
    )


def batches(count: int, seed: int = 0, size: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, 1, 16, 16, generator=generator), torch.randint(0, 4, (size,)))
        for _ in range(count)
    ]


class Recorder(nn.Module):
    """Stands in for the (DDP) model a strategy calls: records each arch and output."""

    def __init__(self, supernet: Supernet) -> None:
        super().__init__()
        self.supernet = supernet
        self.calls: list = []

    def forward(self, x, arch):
        out = self.supernet(x, arch)
        self.calls.append((arch, out))
        return out


def make_strategy(space=None, model=None, budget=None, weight_decay=1e-3, **options):
    space = space or tiny_space()
    torch.manual_seed(0)
    supernet = Supernet(space)
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.1, momentum=0.9)
    data = batches(3, seed=1)
    context = SearchContext(
        budget=Budget.of(space, budget),
        model=model(supernet) if model else supernet,
        weight_optimizer=optimizer,
        arch_batches=lambda: iter(data[:2]),
        calibration_batches=lambda: iter(data),
        seed=0,
        weight_decay=weight_decay,
    )
    config = BigNAS.Config(**options)
    return BigNAS(supernet, config, context)


def test_sandwich_trains_biggest_random_smallest_with_one_optimizer_step():
    strategy = make_strategy(model=Recorder, num_random=2)
    steps = []
    optimizer = strategy.context.weight_optimizer
    original_step = optimizer.step
    optimizer.step = lambda *a, **k: (steps.append(1), original_step(*a, **k))[1]
    space = strategy.space
    drawn = []
    for step, batch in enumerate(batches(3)):
        strategy.context.model.calls.clear()
        before = len(steps)
        metrics = strategy.step(batch, step)
        archs = [arch for arch, _ in strategy.context.model.calls]
        assert len(archs) == 4 and len(steps) == before + 1
        assert archs[0] == biggest(space) and archs[-1] == smallest(space)
        assert archs == strategy.children(step)
        drawn.append(tuple(str(a) for a in archs[1:-1]))
        assert metrics["train/kl_mean"] >= 0
    assert len(set(drawn)) > 1, "random children must change from step to step"
    twin = make_strategy()
    assert all(twin.children(s) == strategy.children(s) for s in range(3)), "seed+step only"


def test_distillation_targets_are_detached_and_students_use_no_dropout():
    strategy = make_strategy(model=Recorder)
    teacher_grads = []
    dropout_seen = []
    head_dropout = strategy.supernet.head.dropout
    original_forward = strategy.supernet.forward

    def forward(x, arch):
        dropout_seen.append(head_dropout.p)
        out = original_forward(x, arch)
        if arch == biggest(strategy.space):
            out.register_hook(lambda g: teacher_grads.append(g))
        return out

    strategy.supernet.forward = forward
    strategy.step(batches(1)[0], 0)
    assert len(teacher_grads) == 1, "only the label loss may reach the biggest child's logits"
    assert dropout_seen == [0.2, 0.0, 0.0, 0.0]
    assert head_dropout.p == 0.2


def gradient_norm_at_step(strategy: BigNAS) -> float:
    """The global gradient norm the optimizer steps with, in one sandwich step."""
    norms = []
    optimizer = strategy.context.weight_optimizer
    original_step = optimizer.step

    def step(*args, **kwargs):
        grads = [p.grad for p in strategy.supernet.parameters() if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return original_step(*args, **kwargs)

    optimizer.step = step
    strategy.step(batches(1)[0], 0)
    return norms[0]


def test_clip_grad_norm_bounds_the_sandwich_gradient_the_optimizer_sees():
    assert gradient_norm_at_step(make_strategy()) > 1e-2
    assert gradient_norm_at_step(make_strategy(clip_grad_norm=1e-3)) == pytest.approx(1e-3, 1e-3)
    with pytest.raises(ConfigError, match="clip_grad_norm"):
        BigNAS.Config(clip_grad_norm=0.0)


def test_weight_decay_is_an_l2_term_on_the_biggest_child_only():
    strategy = make_strategy(weight_decay=1e-2)
    assert BigNAS.weight_decay_in_loss  # the search task builds its optimizer without decay
    weights = [p for p in strategy.supernet.parameters() if p.dim() > 1]
    used = {id(p) for p in strategy._decayed}
    expected = sum(0.5 * 1e-2 * p.pow(2).sum() for p in weights if id(p) in used)
    assert torch.allclose(strategy.l2_penalty(), expected)
    conv = strategy.supernet.blocks[0].expand.conv.weight
    assert id(conv) in used and all(p.dim() > 1 for p in strategy._decayed)
    assert len(used) < len(weights)  # the biggest child leaves some weights unused


def test_zero_init_gamma_makes_every_residual_block_start_as_its_shortcut():
    strategy = make_strategy()
    supernet, space = strategy.supernet, strategy.space
    assert residual_blocks(space) == list(range(len(space.blocks)))
    captured = []
    hooks = [
        block.register_forward_hook(lambda m, args, out: captured.append((m, args, out)))
        for block in supernet.blocks
    ]
    rng = random.Random(0)
    x = torch.randn(4, 1, 16, 16)
    for arch in [biggest(space), smallest(space), *(sample(space, rng) for _ in range(3))]:
        captured.clear()
        supernet(x, arch)
        assert captured
        for block, (inputs, block_plan), out in captured:
            torch.testing.assert_close(out, block.shortcut_of(inputs, block_plan) + 0 * out)
    for hook in hooks:
        hook.remove()


def test_residual_blocks_of_an_identity_space_have_a_shortcut_in_every_child():
    space = get_space("fmnist_small")
    rng = random.Random(0)
    indices = residual_blocks(space)
    for _ in range(50):
        net = plan(space, sample(space, rng))
        for index in indices:
            assert net.blocks[index] is None or net.blocks[index].shortcut != "none"


def test_recipe_lr_schedule_has_a_constant_ending():
    cfg = load_run_config(RECIPE)
    assert cfg.search.schedule == "exp_constant_end" and cfg.search.strategy == "bignas"
    steps_per_epoch = 100
    schedule = search_schedule(cfg.search, steps_per_epoch)
    rates = [schedule.lr(t) for t in range(cfg.search.epochs * steps_per_epoch)]
    floor = cfg.search.lr_floor * cfg.search.lr
    warmup = round(cfg.search.warmup_epochs * steps_per_epoch)
    first_floor = next(t for t, r in enumerate(rates) if t >= warmup and r <= floor + 1e-12)
    assert warmup < first_floor < len(rates) - steps_per_epoch // 2, "a real constant ending"
    assert all(r == pytest.approx(floor) for r in rates[first_floor:])
    decaying = rates[warmup:first_floor]
    assert all(a > b for a, b in zip(decaying, decaying[1:], strict=False))


def test_budget_below_the_smallest_child_is_a_clear_error():
    space = tiny_space()
    floor = arch_cost(space, smallest(space)).macs
    with pytest.raises(BudgetError, match="below the smallest child"):
        select_children(space, lambda a: 0.0, Budget.of(space), [floor - 1])
    with pytest.raises(BudgetError, match="below the smallest child"):
        make_strategy(budget=floor / 2)
    assert parse_budgets("5M, 1.5e7,20k") == [5e6, 1.5e7, 2e4]
    with pytest.raises(ConfigError, match="not a positive number"):
        parse_budgets("5M,ten")
    with pytest.raises(ConfigError, match="'1e999' is not a positive number"):
        parse_budgets("5M,1e999")
    with pytest.raises(ConfigError, match="'5000k' is given twice"):
        parse_budgets("5M,5000k")
    with pytest.raises(ConfigError, match="num_random = -1 must be non-negative"):
        BigNAS.Config(num_random=-1)


def test_recalibrated_bn_equals_statistics_of_the_standalone_child():
    strategy = make_strategy()
    supernet = strategy.supernet
    with torch.no_grad():  # make the trained statistics and affine parameters non-trivial
        for module in supernet.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(5, 9)
                module.weight.uniform_(0.5, 1.5)
    arch = sample(strategy.space, random.Random(3))
    data = batches(4, seed=5)
    child = sliced_child(supernet, arch, data, torch.device("cpu"))
    # Directly: the batch statistics of each BN input of the standalone child, averaged.
    from supernas.nn.standalone import extract_child

    standalone = extract_child(supernet, arch).train()
    seen: dict[str, list] = {}
    for name, module in standalone.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            module.register_forward_hook(
                lambda m, args, out, name=name: seen.setdefault(name, []).append(args[0])
            )
    with torch.no_grad():
        for images, _ in data:
            standalone(resize(images, arch.resolution))
    recalibrated = dict(child.named_modules())
    assert seen
    for name, inputs in seen.items():
        mean = torch.stack([x.mean((0, 2, 3)) for x in inputs]).mean(0)
        var = torch.stack([x.var((0, 2, 3), unbiased=True) for x in inputs]).mean(0)
        torch.testing.assert_close(recalibrated[name].running_mean, mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(recalibrated[name].running_var, var, rtol=1e-4, atol=1e-5)


def test_coarse_to_fine_selection_keeps_budgets_and_improves_on_the_grid():
    space = tiny_space()
    cost = lambda arch: arch_cost(space, arch)  # noqa: E731
    config = SelectConfig(mutations=15)
    grid = coarse_grid(space, config)
    assert smallest(space).resolution in {a.resolution for a in grid}
    assert max(cost(a).macs for a in grid) == cost(biggest(space)).macs
    macs = sorted(cost(a).macs for a in grid)
    budgets = [macs[len(macs) // 4], macs[len(macs) // 2]]

    def score(arch):  # more MACs is better, with a kernel-size preference the grid cannot see
        return cost(arch).macs / 1e9 + 0.01 * sum(b.kernel_size for b in arch.blocks)

    found = select_children(space, score, Budget.of(space), budgets, config)
    assert {c["stage"] for c in found.candidates} == {"coarse", "fine"}
    for budget in budgets:
        chosen = found.chosen[budget]
        assert chosen["macs"] <= budget
        fitting = [c for c in found.candidates if c["macs"] <= budget]
        assert chosen["arch_top1"] == max(c["arch_top1"] for c in fitting)
        coarse = [c["arch_top1"] for c in fitting if c["stage"] == "coarse"]
        assert chosen["arch_top1"] >= max(coarse)


WORLD_SIZE = 2


def test_search_deploys_the_sliced_child_and_select_exports_one_per_budget(tmp_path):
    space = tiny_space()
    space.to_yaml(tmp_path / "space.yaml")
    floor, top = (arch_cost(space, a).macs for a in (smallest(space), biggest(space)))
    settings = {
        "space": str(tmp_path / "space.yaml"),
        "device": "cpu",
        "export": ["state-dict"],
        "data": {
            "name": "synthetic",
            "synthetic_size": 16,
            "synthetic_classes": 4,
            "synthetic_train": 320,
            "synthetic_test": 64,
            "batch_size": 32,
        },
        "search": {
            "strategy": "bignas",
            "schedule": "exp_constant_end",
            "budget": {"target": (floor + top) / 2},
            "arch_eval_batches": 1,
            "options": {"calibration_batches": 2, "selection": {"mutations": 2}},
        },
    }
    cfg = from_dict(RunConfig, settings)
    run_dir = tmp_path / "run"
    result = search(cfg, run_dir)
    assert not (run_dir / "train").exists(), "BigNAS deploys without training"
    assert arch_cost(space, result.arch).macs <= (floor + top) / 2
    assert evaluate(run_dir)["test/top1"] == pytest.approx(result.test_top1)
    resumed = search(cfg, run_dir, resume=True)
    assert resumed.arch == result.arch and resumed.test_top1 == result.test_top1
    budgets = [floor * 1.5, top]
    chosen = select(run_dir, budgets)
    assert [c["budget"] for c in chosen] == budgets
    assert all(c["metric"] == "macs" and c["macs"] <= c["budget"] for c in chosen)
    assert (run_dir / "select" / "accuracy_vs_macs.png").is_file()
    assert (run_dir / "select" / f"{top / 1e6:g}M" / "model.safetensors").is_file()
    report = (run_dir / "report.md").read_text()
    assert "## Selected children" in report and chosen[-1]["arch"] in report
    with pytest.raises(BudgetError):
        select(run_dir, [floor / 2])
