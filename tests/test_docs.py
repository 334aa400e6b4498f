"""The docs agree with the code: pasted command outputs, the README example, links, commands."""

import importlib.util
import re
from pathlib import Path

import pytest

from supernas.cli import build_parser
from supernas.strategies import STRATEGIES

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
TINY = [  # the README's whole run, shrunk to seconds on synthetic data
    "data.name=synthetic",
    "data.synthetic_train=40",
    "data.synthetic_test=16",
    "data.batch_size=8",
    "data.num_workers=0",
    "device=cpu",
    "export=[state-dict]",
    "search.arch_eval_batches=1",
    "search.options.num_candidates=2",
    "search.options.calibration_batches=1",
]


def _regenerate():
    spec = importlib.util.spec_from_file_location("regenerate", ROOT / "docs" / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


regenerate = _regenerate()


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", regenerate.pages(), ids=_name)
def test_pasted_outputs_are_current(page):
    text = page.read_text()
    assert regenerate.render(text) == text, (
        f"{_name(page)} holds a stale `supernas strategy` output; "
        "run .venv/bin/python docs/regenerate.py"
    )


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_has_a_method_page_with_its_options(name):
    page = ROOT / "docs" / "methods" / f"{name}.md"
    assert page.is_file(), f"strategy {name!r} has no page docs/methods/{name}.md"
    assert f"<!-- strategy-show: {name} -->" in page.read_text()
    assert f"methods/{name}.md" in (ROOT / "docs" / "README.md").read_text()


def test_render_replaces_a_stale_block():
    stale = "a\n<!-- strategy-show: random -->\nold table\n<!-- /strategy-show -->\nb\n"
    fresh = regenerate.render(stale)
    assert "old table" not in fresh and fresh.startswith("a\n") and fresh.endswith("\nb\n")
    assert "$ supernas strategy show random\n" in fresh and "num_candidates" in fresh
    assert regenerate.render(fresh) == fresh


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    import supernas.recipe

    (example,) = _python_blocks(README.read_text())
    load = supernas.recipe.load_run_config

    def tiny(recipe, overrides=None):
        return load(ROOT / recipe, [*(overrides or []), *TINY])

    monkeypatch.setattr(supernas.recipe, "load_run_config", tiny)
    monkeypatch.chdir(tmp_path)  # the run directory goes under runs/ here
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["logits"].shape == (8, 10)
    assert (namespace["result"].run_dir / "arch.json").is_file()


def test_readme_names_every_command():
    synopsis = README.read_text().split("## Command line", 1)[1].split("\n## ", 1)[0]
    commands = build_parser()._subparsers._group_actions[0].choices
    for command in commands:
        assert f"supernas {command} " in synopsis, f"README's synopsis lacks '{command}'"
    assert "supernas strategy list | show NAME" in synopsis


def _anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_relative_links_resolve(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{_name(page)}: broken link {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{_name(page)}: no heading for {target}"
