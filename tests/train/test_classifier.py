import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from train_fakes import BATCH, TinyNet, classifier_task, train_loader

from supernas.errors import ConfigError
from supernas.train import ClassifierTask, TrainConfig, evaluate_model, param_groups


def _run(task, steps):
    """Runs ``steps`` steps and returns each step's metrics."""
    batches = iter(train_loader())
    return [task.train_step(next(batches), step) for step in range(steps)]


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_batchnorm_and_biases_get_no_weight_decay():
    model = TinyNet()
    decay, exempt = param_groups(model, 0.1)
    conv, bn, linear = model.features[0], model.features[1], model.head[2]
    assert decay["weight_decay"] == 0.1 and exempt["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(conv.weight), id(linear.weight)}
    assert {id(p) for p in exempt["params"]} == {id(bn.weight), id(bn.bias), id(linear.bias)}


def test_optimizer_choice():
    sgd = classifier_task(10).optimizer
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"]
    assert sgd.defaults["momentum"] == 0.9
    assert isinstance(classifier_task(10, optimizer="adamw").optimizer, torch.optim.AdamW)
    with pytest.raises(ConfigError, match="optimizer 'adam' is not one of sgd, adamw"):
        TrainConfig(optimizer="adam")


def test_reported_lr_is_the_rate_each_step_used():
    task = classifier_task(10)  # lr 0.2 at batch 128, warm-up of 5 steps, 20 steps in all
    peak = 0.2 * BATCH / 128
    rates = [values["lr"] for values in _run(task, 6)]
    assert rates == pytest.approx([peak * (step + 1) / 5 for step in range(5)] + [peak])


def test_gradient_clipping_bounds_the_first_update():
    def first_update(clip):
        task = classifier_task(10, ema_decay=None, weight_decay=0.0, clip_grad_norm=clip)
        before = _flat(task.model)
        lr = _run(task, 1)[0]["lr"]
        return (_flat(task.model) - before).norm().item() / lr

    # Nesterov's first step moves by lr * (1 + momentum) * gradient; this gradient's norm is ~0.6.
    assert first_update(0.1) == pytest.approx(0.19, rel=1e-3)
    assert first_update(None) > 1.0


def test_ema_is_kept_and_evaluated():
    task = classifier_task(10, ema_decay=0.5)
    batches = iter(train_loader())
    task.train_step(next(batches), 0)
    first = _flat(task.model)
    task.train_step(next(batches), 1)
    # The first update copies the weights; each later one moves halfway to them.
    expected = 0.5 * first + 0.5 * _flat(task.model)
    torch.testing.assert_close(_flat(task.eval_model), expected, rtol=0, atol=1e-7)
    assert task.eval_model is task.ema.module
    torch.manual_seed(0)
    evaluation = task.evaluate()
    torch.manual_seed(0)
    assert evaluation == evaluate_model(task.ema.module, task.eval_loader, task.device)
    plain = classifier_task(10, ema_decay=None)
    assert plain.eval_model is plain.model and plain.ema is None


def test_evaluation_counts_top1_and_mean_loss():
    labels = torch.tensor([0, 0, 1, 2])
    loader = DataLoader(TensorDataset(torch.zeros(4, 3), labels), batch_size=3)
    model = nn.Linear(3, 3)
    nn.init.zeros_(model.weight)
    with torch.no_grad():
        model.bias.copy_(torch.tensor([1.0, 0.0, 0.0]))  # always predicts class 0
    result = evaluate_model(model, loader, torch.device("cpu"))
    log_z = math.log(math.e + 2)
    assert result["val/top1"] == 0.5
    assert result["val/loss"] == pytest.approx((2 * (log_z - 1) + 2 * log_z) / 4)


@pytest.mark.parametrize("wanted", [True, False])
def test_cudnn_autotuning_follows_the_config_on_cuda_only(wanted, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    cfg = TrainConfig(epochs=1, cudnn_benchmark=wanted)
    loader = DataLoader(TensorDataset(torch.zeros(4, 1, 8, 8), torch.zeros(4).long()), 4)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    ClassifierTask(TinyNet(), cfg, 1, loader, device, 4)
    assert torch.backends.cudnn.benchmark is (wanted and cuda)
