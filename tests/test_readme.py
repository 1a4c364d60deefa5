"""The Python examples of docs/python-api.md (the Python API page) run as written, and every `avae bandwidth`
line of the README and the docs prints what its comment says."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PYTHON_API = ROOT / "docs" / "python-api.md"


def api_section() -> str:
    return PYTHON_API.read_text()


def test_python_api_examples_run_verbatim(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", api_section(), re.S)
    assert len(blocks) == 3
    outputs = []
    for code in blocks:
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
    assert "epoch 1: validation recon" in outputs[0]
    assert (tmp_path / "runs" / "example" / "evaluate.json").is_file()
    assert re.search(r"h_opt 0\.\d+, h 0\.\d+, sampling std 0\.\d+", outputs[1])
    assert re.fullmatch(r"FD of samples \d+\.\d\n", outputs[2])  # images and networks given as Python objects
    assert (tmp_path / "runs" / "mine" / "networks.pkl").is_file()


def test_the_networks_example_is_the_config_that_names_classes():
    (block,) = re.findall(r"```yaml\n(.*?)```", api_section(), re.S)
    model = yaml.safe_load(block)["model"]
    assert model["encoder"]["class"] == "my_nets:Encoder" and model["decoder"]["hidden"] == 256


def bandwidth_lines() -> list[str]:
    """Every `avae bandwidth ... # h_opt = ...` line of the README and the docs."""
    lines = [line for path in [README, *sorted((ROOT / "docs").glob("*.md"))] for line in path.read_text().splitlines()
             if line.startswith("avae bandwidth ") and "#" in line]
    return list(dict.fromkeys(lines))


def test_the_bandwidth_example_prints_what_its_comment_says():
    lines = bandwidth_lines()
    assert any(line in README.read_text().splitlines() for line in lines), "the README lost its bandwidth example"
    for line in lines:
        command, _, comment = line.partition("#")
        proc = subprocess.run([sys.executable, "-m", "avae", *command.split()[1:]], capture_output=True, text=True)
        printed = dict(re.findall(r"(h_opt|h|sampling std)=([\d.]+)", proc.stdout))
        said = dict(re.findall(r"(h_opt|h|std) = ([\d.]+)", comment))
        assert said and proc.returncode == 0, proc.stderr
        for name, value in said.items():
            assert float(printed["sampling std" if name == "std" else name]) == pytest.approx(float(value), abs=5e-4), line
