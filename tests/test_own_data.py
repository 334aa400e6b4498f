"""A user's own ImageFolder, end to end from other working directories (search, train, eval,
export, predict): 12 classes, no val/, grey or colour, a preset space with no edit. The model
carries its preprocessing, and the ten lines of docs/data.md reproduce `supernas eval` with
nothing but Pillow, NumPy and ONNX Runtime."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from runs import cli_env
from supernas.data.splits import held_out

DOCS = Path(__file__).parents[1] / "docs" / "data.md"
CLASSES = [f"kind{i:02d}" for i in range(12)]
RECIPE = """\
space: fmnist_small
seed: 0
device: cpu
data: {name: imagefolder, data_dir: images, batch_size: 16, num_workers: 0}
search:
  strategy: random
  arch_eval_batches: 1
  options: {num_candidates: 2}
train: {epochs: 1}
export: [onnx]
"""


def write_folder(root: Path, mode: str) -> None:
    """12 classes of 8 images each, 14 x 18 px: a class is a brightness and a stripe period."""
    generator = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for index in range(8):
            stripes = (np.arange(18) // (1 + label % 4)) % 2 * 60
            pixels = 20 * label + stripes[None, :, None] + generator.integers(0, 20, (14, 18, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).convert(mode).save(
                folder / f"{index}.png"
            )


def run(cwd: Path, *args: str) -> str:
    command = [sys.executable, "-m", "supernas", "-q", *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=cli_env())
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def snippet() -> str:
    return re.search(r"```python\n(.*?)```", DOCS.read_text(), re.S).group(1)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_an_imagefolder_from_search_to_predict_with_no_edits(tmp_path, mode):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    write_folder(project / "images", mode)
    (project / "recipe.yaml").write_text(RECIPE)
    elsewhere.mkdir()
    run(elsewhere, "search", "../project/recipe.yaml", "--run-dir", "run")
    arch = str(elsewhere / "run" / "arch.json")
    run(tmp_path, "train", "project/recipe.yaml", "--arch", arch, "--run-dir", "trained")
    assert (tmp_path / "trained" / "model.onnx").is_file()

    copied = tmp_path / "copied"
    shutil.copytree(elsewhere / "run", copied)  # a copied run directory keeps working
    summary = json.loads((copied / "summary.json").read_text())
    assert "10% of train/ (data.test_fraction) is the test set" in summary["splits"]
    assert summary["split_sizes"] == "weight 69 / arch 17 / test 10"
    # auto on small images: light (an eighth of the 24 or 28 px side), no flip
    assert summary["augment"] in ("pad 3 px and crop", "pad 4 px and crop")
    preprocessing = json.loads((copied / "preprocessing.json").read_text())
    assert preprocessing["channels"] == mode and preprocessing["classes"] == CLASSES
    space = (copied / "space.yaml").read_text()
    assert f"in_channels: {len(mode)}" in space and "num_classes: 12" in space

    top1 = float(re.search(r"test top-1: ([\d.]+)%", run(tmp_path, "eval", str(copied)))[1])
    run(tmp_path, "export", str(copied), "--format", "onnx", "--out", str(tmp_path / "out"))
    model = tmp_path / "out" / "model.onnx"

    train = ImageFolder(str(project / "images" / "train"))
    _, test = held_out(len(train.samples), 0.1, seed=0)
    images = [Path(train.samples[i][0]) for i in test]
    labels = [train.samples[i][1] for i in test]
    by_run = run(tmp_path, "predict", str(copied), *map(str, images)).splitlines()
    by_onnx = run(tmp_path, "predict", str(model), *map(str, images)).splitlines()
    names = [line.split("\t")[1] for line in by_run]
    assert names == [line.split("\t")[1] for line in by_onnx]

    code = compile(snippet(), str(DOCS), "exec")
    by_snippet = []
    for image in images:
        scope = {"model_path": str(model), "image_path": str(image)}
        exec(code, scope)
        by_snippet.append(scope["label"])
    assert by_snippet == names
    correct = sum(CLASSES.index(name) == label for name, label in zip(names, labels, strict=True))
    assert correct / len(labels) == pytest.approx(top1 / 100, abs=1e-4)


def test_the_snippet_reads_an_image_as_the_evaluation_transform_does(tmp_path):
    from supernas.data.augment import Augment
    from supernas.data.transforms import folder_transform

    image_path = tmp_path / "wide.png"
    pixels = np.random.default_rng(1).integers(0, 256, (30, 47, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image_path)
    contract = {
        "channels": "RGB", "resize_shorter_side": 27, "center_crop": 24,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "classes": ["a"],
    }  # fmt: skip
    source = snippet().split("\nlabel = ")[0].replace(
        "session = ort.InferenceSession(model_path)\n", ""
    ).replace(
        'pre = json.loads(session.get_modelmeta().custom_metadata_map["supernas.preprocessing"])',
        "pre = contract",
    )
    scope = {"image_path": str(image_path), "contract": contract}
    exec(compile(source, str(DOCS), "exec"), scope)
    augment = Augment(scale=(0.5, 1.0))  # evaluation: resize to 24 / 0.875 = 27, crop 24
    expected = folder_transform(augment, resolution=24, train=False, grey=False)(
        Image.open(image_path)
    )
    torch.testing.assert_close(torch.from_numpy(scope["x"][0]), expected, atol=1e-5, rtol=0)
