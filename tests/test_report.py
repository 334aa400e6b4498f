import json
import re

from supernas.report import metric_group, plot_cost_accuracy, write_report
from supernas.train import read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_metrics(folder, records, tail=""):
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(record) + "\n" for record in records)
    (folder / "metrics.jsonl").write_text(lines + tail)


def training_records():
    records = [
        {"step": s, "epoch": s / 10, "train/loss": 2.0 / s, "lr": 0.1 / s, "cost/macs": 1e6 + s}
        for s in range(1, 20)
    ]
    records.append({"step": 19, "epoch": 2, "val/loss": 0.4, "val/top1": 0.8})
    return records


def images(text):
    return re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)


def test_read_metrics_drops_a_truncated_last_line(tmp_path):
    write_metrics(tmp_path, training_records(), tail='{"step": 20, "train/lo')
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert records == training_records()


def test_read_metrics_keeps_records_after_a_bad_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n\n{"step": 2}\n')
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"step": 1}, {"step": 2}]
    assert read_metrics(tmp_path / "missing" / "metrics.jsonl") == []


def test_metric_groups():
    groups = {
        key: metric_group(key)
        for key in ["train/loss", "search/arch_loss", "val/top1", "arch_top1", "lr", "lr/arch"]
    }
    assert groups == {
        "train/loss": "loss",
        "search/arch_loss": "loss",
        "val/top1": "accuracy",
        "arch_top1": "accuracy",
        "lr": "lr",
        "lr/arch": "lr",
    }
    assert metric_group("search/entropy") == metric_group("fpnas/entropy_factorized") == "entropy"
    assert metric_group("cost/macs") == "other"


def test_report_of_a_run_with_metrics(tmp_path):
    write_metrics(tmp_path, training_records(), tail='{"step": 20, "tr')
    write_metrics(tmp_path / "search", [{"step": 1, "search/entropy": 2.3, "flag": True}])
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    summary = {
        "space": "fmnist_small",
        "arch": "k3_e6|k5_e3",
        "macs_M": 12.5,
        "test_top1": 0.9123456789,
        "export_onnx": str(tmp_path / "model.onnx"),
    }
    rows = [{"block": 0, "kernel_size": 3}, {"block": 1, "present": False}]
    path = write_report(tmp_path, summary, rows)
    assert path == tmp_path / "report.md"
    text = path.read_text()
    assert "| space | fmnist_small |" in text
    assert "| arch | k3_e6\\|k5_e3 |" in text  # a pipe would split the cell
    assert "| macs_M | 12.5 |" in text and "| test_top1 | 0.912346 |" in text
    assert "| export_onnx | [model.onnx](model.onnx) |" in text
    assert "| block | kernel_size | present |" in text and "| 1 |  | False |" in text
    assert "(`metrics.jsonl`, 20 records)" in text
    linked = images(text)
    assert set(linked) == {
        "plots/run_loss.png",
        "plots/run_accuracy.png",
        "plots/run_lr.png",
        "plots/run_other.png",
        "plots/search_entropy.png",
    }
    for image in linked:
        data = (tmp_path / image).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, image
    assert "No metrics file found" not in text
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_report_without_metrics_says_so(tmp_path):
    text = write_report(tmp_path, {"arch": "x", "test_top1": 0.5}).read_text()
    assert "| test_top1 | 0.5 |" in text
    assert "No metrics file found" in text
    assert images(text) == []


def test_report_with_candidates(tmp_path):
    candidates = [
        {"arch": f"a{i}", "macs": 1e6 * i, "params": 1000, "arch_top1": 0.5 + i / 100}
        for i in range(1, 13)
    ]
    text = write_report(tmp_path, {"arch": "a3"}, candidates=candidates).read_text()
    assert "plots/candidates.png" in images(text)
    assert (tmp_path / "plots" / "candidates.png").read_bytes().startswith(PNG_MAGIC)
    assert "Best 10 of 12" in text
    table = [line for line in text.splitlines() if re.match(r"\| a\d+ \|", line)]
    assert [line.split(" | ")[0] for line in table] == [f"| a{i}" for i in range(12, 2, -1)]


def test_cost_accuracy_plot_marks_the_chosen(tmp_path):
    points = [
        {"arch": "a", "macs": 1e6, "arch_top1": 0.5},
        {"arch": "b", "macs": 2e6, "arch_top1": 0.6},
    ]
    plain = plot_cost_accuracy(points, [], tmp_path / "plain.png").read_bytes()
    marked = plot_cost_accuracy(points, ["b"], tmp_path / "marked.png").read_bytes()
    assert plain.startswith(PNG_MAGIC) and plain != marked


def test_near_chance_results_are_said_in_one_line_each():
    from supernas.api import near_chance

    guessing = [{"arch_top1": 0.11}, {"arch_top1": 0.13}]
    lines = near_chance(10, guessing, test_top1=0.12)
    assert len(lines) == 2
    assert lines[0].startswith("every candidate scored at most 13.0% on the arch split")
    assert "near chance (10.0%), so the choice among them was random" in lines[0]
    assert lines[1].startswith("test top-1 12.0% is near chance (10.0%)")
    assert near_chance(10, [{"arch_top1": 0.11}, {"arch_top1": 0.4}], test_top1=0.9) == []
    assert near_chance(4, [], test_top1=0.5) == []
