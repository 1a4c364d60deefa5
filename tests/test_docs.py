"""The documentation: the site builds without a warning, the README stays short, every relative link
leads to a file, and every `avae <command>` the README and the docs name is a command of `avae`."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def relative_links(text: str) -> list[str]:
    """The targets of the Markdown links in `text` that are neither absolute URLs nor anchors on the same page."""
    text = FENCE.sub("", text)  # links inside code blocks are code, not links
    return [target for target in LINK.findall(text)
            if not re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) and not target.startswith("#")]


def named_commands(text: str) -> set[str]:
    """The `avae <command>` of `text`'s shell blocks and inline code (Python blocks and prose left out)."""
    code = [body for lang, body in FENCE.findall(text) if lang != "python"]
    code += re.findall(r"`([^`\n]+)`", FENCE.sub("", text))
    return {name for piece in code for name in re.findall(r"(?<!from )(?<![\w./-])avae ([a-z][a-z0-9_-]*)", piece)}


def subcommands() -> set[str]:
    proc = subprocess.run([sys.executable, "-m", "avae", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    (choices,) = set(re.findall(r"\{([a-z0-9,_-]+)\}", proc.stdout))
    return set(choices.split(","))


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Aggregate Variational Autoencoder" in (site / "index.html").read_text()
    reference = (site / "api-reference" / "index.html").read_text()
    for name in ("AggregateKL", "sigma_from_validation", "evaluate", "kl_to_standard_normal"):
        assert name in reference, f"{name} is missing from the generated API reference"


def test_every_page_is_in_the_navigation_and_every_entry_is_a_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = [next(iter(entry.values())) if isinstance(entry, dict) else entry for entry in config["nav"]]
    assert sorted(listed) == sorted(page.name for page in PAGES)


def test_the_readme_is_short_and_keeps_its_commands():
    assert len(README.read_bytes()) <= 12_000
    lines = README.read_text().splitlines()
    assert "python3 -m pip install torch==2.13.0 -e . && avae demo" in lines  # the quick start
    assert "python3 -m pip install torch==2.13.0 -e '.[test]' && python3 -m pytest -q" in lines  # what .ci/run runs


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files(path):
    missing = [target for target in relative_links(path.read_text())
               if not (path.parent / target.split("#", 1)[0]).exists()]
    assert not missing, f"{path.name} links to files that do not exist: {missing}"


def test_the_readme_links_every_page():
    linked = {(README.parent / target.split("#", 1)[0]).resolve() for target in relative_links(README.read_text())}
    assert {page.resolve() for page in PAGES} <= linked, "the README's 'Where to read on' misses a page"


def test_every_avae_command_named_is_a_real_command():
    real = subcommands()
    assert {"train", "evaluate", "fit-sampler"} <= real
    for path in [README, *PAGES]:
        named = named_commands(path.read_text())
        assert not named - real, f"{path.name} names commands avae does not have: {sorted(named - real)}"


def test_the_readme_python_example_is_valid_python():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks
    for code in blocks:
        compile(code, "README.md", "exec")


def test_the_helpers_catch_what_they_are_for():
    """The checks above can fail: a broken link, an unknown command and a URL are told apart."""
    text = "[a](docs/nothing.md) [b](https://example.org/x.md) [c](#anchor)\n`avae trian --x` and `from avae import samplers`\n"
    assert relative_links(text) == ["docs/nothing.md"]
    assert named_commands(text) == {"trian"}
    assert named_commands("```bash\ntorchrun -m avae train\n```\n```python\nimport avae\n```\n") == {"train"}
