"""bench/gpu_check.py in CPU mode: the script CI runs so that the GPU check cannot rot between GPU loans."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
PARTS = {"prepare", "scar", "deita", "diversity", "ray", "deita_vllm"}
# The parts whose every check can run on a CPU: all but vLLM (GPU only), and Ray where it is installed.
RUN_ON_CPU = {"prepare", "scar", "deita", "diversity"} | ({"ray"} if importlib.util.find_spec("ray") else set())

pytestmark = pytest.mark.slow


def _run_check(out: Path, data: Path, smollm2_dir: Path, *options: str) -> subprocess.CompletedProcess:
    # The dequantized SmolLM2 (whose tokenizer the tiny Llama takes) sits in the tests' cache folder.
    env = {**os.environ, "SFTSELECT_CACHE_DIR": str(smollm2_dir.parents[1])}
    command = [sys.executable, str(SCRIPT), "--cpu", "--out", str(out), "--data", str(data), *options]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


def _results(out: Path) -> dict:
    (path,) = out.glob("gpu_check_*.json")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory, shared_data, smollm2_dir):
    out = tmp_path_factory.mktemp("gpu-check")
    return _run_check(out, shared_data, smollm2_dir), out


def test_cpu_mode_exits_zero(cpu_run):
    completed, _ = cpu_run
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]


def test_every_part_has_a_status_in_the_json(cpu_run):
    parts = _results(cpu_run[1])["parts"]
    assert set(parts) == PARTS
    for name, part in parts.items():
        assert part["status"].split(":")[0] in ("passed", "failed", "skipped"), (name, part["status"])


def test_parts_that_can_run_on_a_cpu_pass_their_checks(cpu_run):
    parts = _results(cpu_run[1])["parts"]
    for name in RUN_ON_CPU:
        assert parts[name]["status"] == "passed", (name, parts[name]["status"])
        assert parts[name]["checks"] and all(check["passed"] for check in parts[name]["checks"]), name


def test_the_vllm_part_says_why_it_is_skipped_on_a_cpu(cpu_run):
    assert _results(cpu_run[1])["parts"]["deita_vllm"]["status"].startswith("skipped: CPU mode")


def test_ratio_lines_are_printed_for_scar_and_deita(cpu_run):
    ratios = [line for line in cpu_run[0].stdout.splitlines() if line.startswith("ratio: ")]
    assert any("SCAR" in line and "official score_pairs" in line for line in ratios)
    assert any("deita ours batched" in line for line in ratios)
    assert all(float(line.split()[1]) > 0 for line in ratios)


def test_a_part_cut_off_by_its_time_box_fails_and_the_rest_are_reported(tmp_path, shared_data, smollm2_dir):
    completed = _run_check(tmp_path, shared_data, smollm2_dir, "--parts", "diversity", "--time-limit", "0.5")
    assert completed.returncode == 1
    parts = _results(tmp_path)["parts"]
    assert parts["prepare"]["status"].startswith("failed: timed out")
    assert parts["diversity"]["status"].startswith("skipped: prepare did not pass")
