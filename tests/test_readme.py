"""The README's Python examples run as written (the code blocks of its "Python API" section)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

README = Path(__file__).resolve().parent.parent / "README.md"


def api_section() -> str:
    return README.read_text().split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]


def test_python_api_examples_run_verbatim(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", api_section(), re.S)
    assert len(blocks) == 2
    outputs = []
    for code in blocks:
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
    assert "epoch 1: validation recon" in outputs[0]
    assert (tmp_path / "runs" / "example" / "evaluate.json").is_file()
    assert re.search(r"h_opt 0\.\d+, h 0\.\d+, sampling std 0\.\d+", outputs[1])


def test_the_networks_example_is_the_config_that_names_classes():
    (block,) = re.findall(r"```yaml\n(.*?)```", api_section(), re.S)
    model = yaml.safe_load(block)["model"]
    assert model["encoder"]["class"] == "my_nets:Encoder" and model["decoder"]["hidden"] == 256


def test_the_bandwidth_example_prints_what_its_comment_says():
    line = next(line for line in README.read_text().splitlines() if line.startswith("avae bandwidth "))
    command, _, comment = line.partition("#")
    proc = subprocess.run([sys.executable, "-m", "avae", *command.split()[1:]], capture_output=True, text=True)
    printed = dict(re.findall(r"(h_opt|h|sampling std)=([\d.]+)", proc.stdout))
    said = dict(re.findall(r"(h_opt|h|std) = ([\d.]+)", comment))
    assert said and proc.returncode == 0, proc.stderr
    for name, value in said.items():
        assert float(printed["sampling std" if name == "std" else name]) == pytest.approx(float(value), abs=5e-4)
