"""Every script in examples/ runs as documented and produces what it says it does."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
IMPORTED = {"my_nets.py"}  # a module the scripts import, not a script
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if p.name not in IMPORTED)


def number(pattern: str, text: str) -> float:
    found = re.search(pattern + r"\s*(-?[\d.]+)", text)
    assert found, f"no {pattern!r} in the output:\n{text}"
    return float(found.group(1))


def check_own_data(out: Path, stdout: str):
    for name in ("REC", "INT", "N"):
        assert np.isfinite(number(rf"\({name}\):", stdout))
    assert 0 <= number(r"KS of ‖z‖² against the sampler", stdout) <= 1
    results = json.loads((out / "evaluate.json").read_text())
    assert results["dataset"] == "array" and results["model"] == "avae" and results["n"] == 300
    assert (out / "evaluate.html").is_file()
    with np.load(out.parent / "out-data.npz") as data:  # the toy set it wrote, with labels
        assert data["images"].shape == (3000, 32, 32) and data["labels"].shape == (3000,)


def check_own_networks(out: Path, stdout: str):
    config = (out / "config.yaml").read_text()
    assert "my_nets:Encoder" in config and "my_nets:Decoder" in config
    samples = np.load(out / "my_samples.npy")
    assert samples.shape == (16, 1, 64, 64) and samples.dtype == np.uint8
    assert "sampled (16, 1, 64, 64), codes (16, 6)" in stdout


def check_kl_in_your_loop(out: Path, stdout: str):
    assert len(re.findall(r"^epoch \d+: validation SSE", stdout, re.M)) == 3
    assert 0 <= number(r"KS of ‖z‖²", stdout) <= 1
    samples = np.load(out / "samples.npy")
    assert samples.shape == (64, 16, 16) and samples.min() >= 0 and samples.max() <= 1


def check_compare_models(out: Path, stdout: str):
    assert (out / "comparison.html").is_file()
    for model in ("avae", "vae"):
        assert json.loads((out / model / "evaluate.json").read_text())["model"] == model
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == ["avae", "vae"])
    fd = lines[header + 1].split()
    assert fd[:3] == ["FD", "samples", "↓"] and len(fd) == 5 and all(np.isfinite(float(v)) for v in fd[3:])


def check_samplers(out: Path, stdout: str):
    assert (out / "samplers" / "gaussian-last.pt").is_file() and (out / "samplers" / "gmm-last.pt").is_file()
    samples = np.load(out / "gmm_samples.npy")
    assert samples.shape == (64, 1, 64, 64) and samples.dtype == np.uint8
    results = json.loads((out / "evaluate.json").read_text())
    assert list(results["samplers"]) == ["prior", "gaussian", "gmm"]
    assert number(r"sampler gmm\s+Fréchet distance of samples", stdout) >= 0


def check_python_objects(out: Path, stdout: str):
    assert "feature space: classifier" in stdout and "sampled (8, 1, 32, 32)" in stdout
    assert (out / "networks.pkl").is_file() and "name: python" in (out / "config.yaml").read_text()
    assert np.isfinite(number(r"Fréchet distance of samples:", stdout))


# each script's flags for a quick run (its defaults are a little larger) and what to check afterwards
RUNS = {
    "own_data.py": (["--epochs", "2", "--n", "300"], check_own_data),
    "own_networks.py": (["--hidden", "64"], check_own_networks),
    "kl_in_your_loop.py": (["--epochs", "3"], check_kl_in_your_loop),
    "compare_models.py": (["--epochs", "1"], check_compare_models),
    "samplers.py": (["--epochs", "1", "--k", "3"], check_samplers),
    "python_objects.py": (["--epochs", "1"], check_python_objects),
}


def test_every_script_has_a_check():
    assert sorted(RUNS) == SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs(script, tmp_path):
    flags, check = RUNS[script]
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *flags, "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check(out, proc.stdout)


def test_every_script_is_in_the_readme():
    readme = (EXAMPLES / "README.md").read_text()
    listed = set(re.findall(r"`([\w-]+\.py)`", readme))
    assert {p.name for p in EXAMPLES.glob("*.py")} == listed
