"""ProxylessNAS: gate sampling, two-path rescaling, gate gradients, one path in memory, the
expected cost and its gradient (two ranks staying in step: `test_contract.py`)."""

import copy
import itertools
import json
import random
import re

import pytest
import torch
import torch.nn.functional as F
from draws import LANGUAGE_SPACES, contract_space
from tables import fake_table

from supernas.cost.budget import Budget
from supernas.cost.macs import arch_cost
from supernas.cost.metrics import METRICS, Latency
from supernas.errors import ConfigError
from supernas.nn import Supernet
from supernas.space import BlockSpec, HeadSpec, SearchSpace, StemSpec, smallest
from supernas.strategies import SearchContext
from supernas.strategies.proxyless import ProxylessNAS
from supernas.strategies.proxyless.expected import ExpectedPathCost
from supernas.strategies.proxyless.paths import BlockPath, gated_forward, weighted_forward
from supernas.train.memory import saved_activation_bytes


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is much faster than several fighting over shared cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_space(kernels=(3, 5), name="tiny") -> SearchSpace:
    """Width, expansion, kernel and depth choices at 8x8: 8, 5 and 3 candidates per block."""
    return SearchSpace(
        name=name,
        in_channels=1,
        num_classes=4,
        resolutions=(8,),
        stem=StemSpec(out_channels=(8,), stride=1),
        blocks=(
            BlockSpec(1, 2, (8, 12), (2, 3), kernels),
            BlockSpec(1, 1, (12, 16), (2,), kernels, optional=True),
            BlockSpec(2, 1, (16,), (2, 3), (3,), optional=True),
        ),
        head=HeadSpec(hidden_channels=(16,)),
        kernel_sharing="separate",
    )


def kernel_space(kernels) -> SearchSpace:
    """Candidates differ only in kernel size, so every path keeps activations of one size."""
    blocks = tuple(BlockSpec(1, s, (16,), (3,), kernels) for s in (2, 1, 1))
    return SearchSpace(
        name=f"k{len(kernels)}",
        in_channels=1,
        num_classes=4,
        resolutions=(16,),
        stem=StemSpec(out_channels=(8,), stride=1),
        blocks=blocks,
        head=HeadSpec(hidden_channels=(16,)),
        kernel_sharing="separate",
    )


def batches(seed=0, size=8, resolution=8):
    generator = torch.Generator().manual_seed(seed)
    while True:
        x = torch.randn(size, 1, resolution, resolution, generator=generator)
        yield x, torch.randint(0, 4, (size,), generator=generator)


def make(
    space=None,
    model=None,
    reduce=None,
    stream=None,
    target=2e5,
    metric="macs",
    lut=None,
    **options,
):
    space = space or tiny_space()
    torch.manual_seed(0)
    net = Supernet(space)
    stream = stream or batches()
    context = SearchContext(
        budget=Budget.of(space, target, metric, lut),
        model=model(net) if model else net,
        weight_optimizer=torch.optim.SGD(net.parameters(), lr=0.05),
        arch_batches=lambda: iter(()),
        calibration_batches=lambda: iter(()),
        steps_per_epoch=4,
        arch_stream=lambda: stream,
        **({"reduce_gradients": reduce} if reduce else {}),
    )
    options = {"arch_every": 1, **options}
    return ProxylessNAS(net.train(), ProxylessNAS.Config(**options), context)


def test_candidates_are_the_product_of_options_plus_zero():
    strategy = make()
    assert [len(c) for c in strategy.frame.candidates] == [8, 5, 3]
    assert strategy.frame.candidates[1][-1] is None and None not in strategy.frame.candidates[0]


def test_gate_sampling_frequencies_follow_softmax_alpha():
    strategy = make()
    with torch.no_grad():
        strategy.alphas[0].copy_(torch.tensor([1.5, 0.0, -1.0, 0.5, 2.0, -2.0, 0.0, 1.0]))
    draws = 20000
    counts = torch.zeros(8)
    for _ in range(draws):
        counts[strategy.sample_paths()[0]] += 1
    expected = draws * torch.softmax(strategy.alphas[0].detach(), 0)
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 24.32  # chi-square, 7 degrees of freedom, p = 0.001


@pytest.mark.parametrize("target", [2e5, None])
def test_two_path_update_leaves_unsampled_probabilities_unchanged(target):
    strategy = make(mode="two_path", target=target, arch_lr=0.5, init_std=1.0)
    moved = 0
    for _ in range(3):
        before = strategy.probabilities()
        strategy.arch_step(strategy.arch_stream.next())
        for old, new in zip(before, strategy.probabilities(), strict=True):
            changed = (new - old).abs() > 1e-6
            assert changed.sum() <= 2
            torch.testing.assert_close(new[~changed], old[~changed], atol=1e-6, rtol=0)
            torch.testing.assert_close(new[changed].sum(), old[changed].sum(), atol=1e-6, rtol=0)
            moved += int(changed.any())
    assert moved > 0, "no block was ever updated"


def test_zero_op_active_gets_no_update():
    strategy = make(mode="full", arch_lr=0.5)
    with torch.no_grad():
        strategy.alphas[1].copy_(torch.tensor([-9.0, -9.0, -9.0, -9.0, 9.0]))  # zero op
    before = strategy.alphas[1].detach().clone()
    strategy.arch_step(strategy.arch_stream.next())
    assert torch.equal(strategy.alphas[1].detach(), before)
    assert not torch.equal(strategy.alphas[0].detach(), torch.zeros(8))


def _gate_grads(strategy, active, kept: bool) -> list[torch.Tensor]:
    """Gate gradients of all candidates: re-run in backward, or all outputs kept (``full``)."""
    frame, net = strategy.frame, strategy.supernet
    gates = [
        torch.eye(len(c), dtype=torch.float64)[a].requires_grad_()
        for c, a in zip(frame.candidates, active, strict=True)
    ]
    x, labels = next(batches(3))
    if kept:
        forward = _kept_outputs_forward(frame, active, gates)
    else:
        paths = [BlockPath(a, tuple(range(len(g))), g) for a, g in zip(active, gates, strict=True)]
        forward = gated_forward(frame, paths)
    F.cross_entropy(net(x.double(), forward), labels).backward()
    return [g.grad for g in gates]


def _kept_outputs_forward(frame, active, gates):
    """The reference ``full`` mode: y = sum_j g_j o_j(x), every o_j computed with autograd."""
    from supernas.nn.supernet import resize
    from supernas.strategies.proxyless.paths import run_candidate

    def forward(supernet, x):
        space = frame.space
        x = supernet.stem(resize(x, frame.resolution), frame.stem_channels, "relu")
        width = frame.stem_channels
        for index, (a, g) in enumerate(zip(active, gates, strict=True)):
            options = frame.candidates[index]
            outs = [run_candidate(supernet, frame, index, x, width, op) for op in options]
            x = sum(gj * o for gj, o in zip(g, outs, strict=True))
            width = width if options[a] is None else options[a].out_channels
        return supernet.head(x, frame.head_channels, space.head.activation)

    return forward


def test_gate_gradients_recomputed_in_backward_equal_all_outputs_kept():
    strategy = make()
    strategy.supernet.double().eval()
    for active in ([1, 2, 0], [5, 4, 1], [7, 0, 2]):
        rerun = _gate_grads(strategy, active, kept=False)
        kept = _gate_grads(strategy, active, kept=True)
        for a, b in zip(rerun, kept, strict=True):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)
        assert all(g.abs().sum() > 0 for g in rerun)


def test_one_hot_gated_forward_is_the_child():
    strategy = make()
    net = strategy.supernet.double().eval()
    x = next(batches(4))[0].double()
    for active in itertools.product(range(8), range(5), range(3)):
        if sum(active) % 7:  # a spread of 17 combinations, zero ops included
            continue
        paths = [BlockPath(a, (a,), torch.ones(1, dtype=torch.float64)) for a in active]
        relaxed = net(x, gated_forward(strategy.frame, paths))
        torch.testing.assert_close(relaxed, net(x, strategy.frame.arch(active)))


@pytest.mark.parametrize("name", [n for n, s in LANGUAGE_SPACES.items() if not s.tie_stages])
def test_one_hot_gated_forward_is_the_child_for_every_option_of_the_language(name):
    """Expansion 1 among others, every attention and activation, optional blocks, both kernel
    sharings and shortcuts: drawn paths, train mode (each pair of forwards draws the same
    dropout mask), float64."""
    space = LANGUAGE_SPACES[name]
    strategy = make(space)
    net = strategy.supernet.double().train()
    rng = random.Random(0)
    generator = torch.Generator().manual_seed(0)
    resolution = max(space.resolutions)  # the frame's fixed resolution
    x = torch.randn(8, space.in_channels, resolution, resolution, generator=generator)
    for _ in range(12):
        active = [rng.randrange(len(c)) for c in strategy.frame.candidates]
        paths = [BlockPath(a, (a,), torch.ones(1, dtype=torch.float64)) for a in active]
        arch = strategy.frame.arch(active)
        torch.manual_seed(1)
        gated = net(x.double(), gated_forward(strategy.frame, paths))
        torch.manual_seed(1)
        torch.testing.assert_close(
            gated,
            net(x.double(), arch),
            rtol=1e-10,
            atol=1e-10,
            msg=lambda m, arch=arch: f"{m}\narch {arch}",
        )


def test_only_one_path_of_activations_is_kept():
    few, many = (
        make(kernel_space(k), stream=batches(resolution=16), target=None)
        for k in ((3, 5), tuple(range(3, 20, 2)))
    )
    assert [len(c) for c in many.frame.candidates] == [9, 9, 9]
    batch = next(batches(resolution=16))
    weight_bytes = [
        saved_activation_bytes(s.supernet, lambda s=s: s.weight_step(batch)) for s in (few, many)
    ]
    arch_bytes = [
        saved_activation_bytes(s.supernet, lambda s=s: s.arch_step(s.arch_stream.next()))
        for s in (few, many)
    ]
    assert weight_bytes[0] == weight_bytes[1] > 0
    # Only the alpha-sized tensors (softmax, cost weights: bytes) grow with the candidates.
    assert arch_bytes[1] == pytest.approx(arch_bytes[0], rel=0.01) and arch_bytes[0] > 0
    mixes = [torch.softmax(a, 0) for a in many.alphas]
    all_paths = saved_activation_bytes(
        many.supernet,
        lambda: F.cross_entropy(
            many.supernet(batch[0], weighted_forward(many.frame, mixes)), batch[1]
        ).backward(),
    )
    assert all_paths > 5 * weight_bytes[1]


def _random_q(strategy, seed):
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(len(c), generator=generator, dtype=torch.float64)
        for c in strategy.frame.candidates
    ]


def test_expected_latency_gradient_matches_finite_differences():
    space = tiny_space()
    strategy = make(space)
    expected = ExpectedPathCost(strategy.frame, Latency(space, fake_table(space)))
    alphas = [a.requires_grad_() for a in _random_q(strategy, 5)]
    expected([torch.softmax(a, 0) for a in alphas]).backward()
    eps = 1e-6
    for a in alphas:
        for i in range(len(a)):
            with torch.no_grad():
                a[i] += eps
                up = expected([torch.softmax(b, 0) for b in alphas]).item()
                a[i] -= 2 * eps
                down = expected([torch.softmax(b, 0) for b in alphas]).item()
                a[i] += eps
            assert a.grad[i].item() == pytest.approx((up - down) / (2 * eps), abs=1e-7)
    assert any(a.grad.abs().sum() > 0 for a in alphas)


@pytest.mark.parametrize("kind", ["latency", "macs", "params"])
def test_expected_cost_of_one_hot_paths_is_the_exact_cost(kind):
    space = tiny_space()
    strategy = make(space)
    table = fake_table(space)
    metric = Latency(space, table) if kind == "latency" else METRICS.get(kind)(space)
    expected = ExpectedPathCost(strategy.frame, metric)
    for active in ([0, 0, 0], [7, 4, 2], [3, 1, 1], [6, 2, 0]):
        arch = strategy.frame.arch(active)
        q = [
            torch.eye(len(c), dtype=torch.float64)[a]
            for c, a in zip(strategy.frame.candidates, active, strict=True)
        ]
        exact = (
            table.predict(space, arch)
            if kind == "latency"
            else getattr(arch_cost(space, arch), kind)
        )
        assert expected(q).item() == pytest.approx(exact, rel=1e-9)


def test_latency_search_reads_the_table_and_refuses_another_space(tmp_path):
    space = tiny_space()
    fake_table(space).save(tmp_path / "lut.json")
    strategy = make(space, metric="latency", lut=str(tmp_path / "lut.json"), target=3.0)
    strategy.step(next(batches()), 0)
    assert 0 < strategy.context.budget.cost(strategy.derive()) <= 3.0
    fake_table(tiny_space(name="other")).save(tmp_path / "other.json")
    with pytest.raises(ConfigError, match="measured for space other"):
        make(space, metric="latency", lut=str(tmp_path / "other.json"), target=3.0)
    with pytest.raises(ConfigError, match="needs search.budget.lut"):
        make(space, metric="latency", target=3.0)


def test_bad_options_are_refused(tmp_path):
    space = tiny_space()
    fast_table = str(tmp_path / "fast.json")
    fake_table(space, scale=0.01).save(fast_table)  # a child runs in under 1 ms
    with pytest.raises(ConfigError, match="mode"):
        make(mode="darts")
    with pytest.raises(ConfigError, match="log T > 0"):
        make(metric="latency", lut=fast_table, target=0.9, loss="mul_log")
    from supernas.space import get_space

    with pytest.raises(ConfigError, match="ties its stages"):
        make(get_space("fmnist_bignas"), target=None)


@pytest.mark.parametrize("loss", ["linear", "budget"])
def test_latency_target_pulls_the_arch_towards_cheaper_candidates(loss):
    """A target at the space's smallest child, below every arch of the frame, and a heavy
    cost weight (CE negligible): the argmax gets cheaper, under the additive form and under
    the hinge."""
    space = tiny_space()
    floor = arch_cost(space, smallest(space)).macs
    strategy = make(space, mode="full", target=floor, loss=loss, loss_lambda=50.0, arch_lr=0.1)
    start = arch_cost(space, strategy.frame.arch([0, 0, 0])).macs
    for _ in range(6):
        strategy.arch_step(strategy.arch_stream.next())
    derived = arch_cost(space, strategy.argmax_arch()).macs
    big = arch_cost(space, strategy.frame.arch([7, 3, 1])).macs
    assert derived < big and start > 0


@pytest.mark.parametrize("mode", ["two_path", "full"])
def test_resumed_search_continues_exactly(mode):
    """Stop after 3 steps, rebuild from the checkpointed state, go on: same alpha, same arch."""

    def run(stop_after=None, state=None):
        strategy = make(mode=mode, arch_lr=0.1, stream=batches(9))
        if state is not None:
            strategy.supernet.load_state_dict(state["supernet"])
            strategy.context.weight_optimizer.load_state_dict(state["optimizer"])
            strategy.load_state_dict(state["strategy"])
        weight_batches = itertools.islice(batches(11), 6)
        for step, batch in enumerate(weight_batches):
            if state is not None and step < 3:
                continue
            strategy.step(batch, step)
            if step + 1 == stop_after:
                return {
                    "supernet": copy.deepcopy(strategy.supernet.state_dict()),
                    "optimizer": copy.deepcopy(strategy.context.weight_optimizer.state_dict()),
                    "strategy": copy.deepcopy(strategy.state_dict()),
                }
        return strategy

    whole, resumed = run(), run(state=run(stop_after=3))
    for a, b in zip(whole.alphas, resumed.alphas, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert whole.derive() == resumed.derive()


def test_reinforce_moves_alpha_and_state_round_trips():
    strategy = make(mode="reinforce", samples=4, arch_lr=0.1)
    for step in range(3):
        strategy.step(next(batches(7)), step)
    assert strategy.baseline is not None
    assert any(a.detach().abs().max() > 5e-2 for a in strategy.alphas)
    state = strategy.state_dict()
    other = make(mode="reinforce", samples=4, arch_lr=0.1)
    other.load_state_dict(state)
    assert other.derive() == strategy.derive()
    assert other.sample_paths() == strategy.sample_paths()


@pytest.mark.slow
def test_a_latency_search_reports_predicted_and_measured_latency(tmp_path):
    """The summary, the report and the printed result give the target, the predicted and the
    measured latency of the derived model; ``latency measure`` times it again on its own."""
    from test_killed_resume import tiny_search

    from runs import supernas

    settings = tiny_search(tmp_path, "proxyless")
    table = tmp_path / "lut.json"
    fake_table(contract_space(num_classes=10), scale=0.1).save(table)
    budget = f"search.budget={{metric: latency, target: 100.0, lut: {table}}}"
    run_dir = tmp_path / "run"
    out = supernas("search", "--run-dir", str(run_dir), *settings, "--set", budget).stdout
    assert "against a target of 100 ms: within it" in out
    measured = r"latency: +[\d.]+ ms measured \(.*, 1 threads, batch 1\), [\d.]+ ms predicted"
    assert re.search(measured, out), out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["budget_target"] == 100.0 and summary["latency_measured_ms"] > 0
    assert summary["latency_predicted_ms"] == summary["budget_cost"]
    assert "latency_measured_ms" in (run_dir / "report.md").read_text()
    again = supernas("latency", "measure", str(run_dir)).stdout
    assert again.startswith("latency: ") and "ms predicted" in again
    assert "Latency table check" not in (run_dir / "report.md").read_text()
    rows = [{"arch": "a", "predicted_ms": p, "measured_ms": m} for p, m in ((1, 1.1), (2, 1.9))]
    check = {"space": "tiny", "device": "cpu:test", "runtime": "onnxruntime",
             "precision": "int8", "archs": 2, "mape": 0.07, "within_10pct": 1.0,
             "spearman": 1.0, "repeat_mape": 0.15, "repeat_within_10pct": 0.5,
             "rows": rows}  # fmt: skip
    (tmp_path / "lut.check.json").write_text(json.dumps(check))  # as `latency check` writes
    supernas("report", str(run_dir))
    report = (run_dir / "report.md").read_text()
    assert "## Latency table check" in report and "| onnxruntime | int8 |" in report
    assert "Warning: this machine's own latency moves by more than 10%" in report
    assert (run_dir / "plots" / "latency_check.png").stat().st_size > 0
