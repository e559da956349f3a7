"""HumanEval: the packaged problems, code extraction, program assembly, pass@k, and a tiny model end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sftselect.errors import OptionError
from sftselect.evaluation.humaneval import (
    build_program,
    extract_code,
    load_problems,
    pass_at_k,
    score_solutions,
)
from sftselect.evaluation.sandbox import SandboxLimits, sandbox_problem

QUICK = SandboxLimits(timeout_seconds=5)
PROBLEM = sandbox_problem()
sandboxed = pytest.mark.skipif(PROBLEM is not None, reason=f"no sandbox for generated code here: {PROBLEM}")
SFTSELECT = Path(sys.executable).with_name("sftselect")
installed = pytest.mark.skipif(not SFTSELECT.exists(), reason=f"no installed console script at {SFTSELECT}")


@pytest.fixture(scope="module")
def problems():
    return load_problems(limit=3)


def test_all_164_problems_load_from_the_package():
    everything = load_problems()
    assert len(everything) == 164 and everything[0]["task_id"] == "HumanEval/0"


def test_packaged_data_is_identical_to_the_shared_copy(shared_data):
    assert load_problems(shared_data / "benchmarks" / "HumanEval.jsonl.gz") == load_problems()


@sandboxed
def test_all_164_canonical_solutions_pass(shared_data):
    everything = load_problems(shared_data / "benchmarks" / "HumanEval.jsonl.gz")
    started = time.perf_counter()
    result = score_solutions(everything, [[problem["canonical_solution"]] for problem in everything], limits=SandboxLimits(timeout_seconds=30))
    failed = [d["task_id"] for d in result.details if d["correct"] == 0]
    assert result.tasks == 164 and failed == [], [d["samples"][0]["detail"] for d in result.details if d["correct"] == 0][:3]
    print(f"164 canonical solutions in {time.perf_counter() - started:.1f} s")


@sandboxed
def test_canonical_solutions_pass_and_wrong_ones_fail(problems):
    right = [[problem["canonical_solution"]] for problem in problems]
    wrong = [["    return None\n"] for _ in problems]
    assert score_solutions(problems, right, limits=QUICK).pass_at == {1: 1.0}
    assert score_solutions(problems, wrong, limits=QUICK).pass_at == {1: 0.0}


@sandboxed
def test_a_chat_answer_with_the_whole_function_in_a_code_block_is_run(problems):
    problem = problems[0]
    answer = "Here it is:\n```python\n" + problem["prompt"] + problem["canonical_solution"] + "```\nHope it helps."
    code = extract_code(answer, "chat")
    assert score_solutions([problem], [[code]], limits=QUICK).pass_at == {1: 1.0}


def test_a_completion_is_cut_at_the_next_top_level_definition():
    assert extract_code("    return 1\n\ndef other():\n    pass\n", "completion") == "    return 1\n"


def test_a_program_defining_the_entry_point_keeps_the_prompt_imports(problems):
    problem = problems[0]
    code = "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n    return False\n"
    program = build_program(problem, code)
    assert program.solution.startswith(problem["prompt"]) and program.solution.endswith(code)
    assert program.entry_point == "has_close_elements"


def test_the_tests_get_the_prompts_helpers_but_none_of_the_models_code(problems):
    program = build_program(problems[0], "    import os\n    os._exit(0)\n")
    assert program.tests.startswith(problems[0]["prompt"]) and problems[0]["test"] in program.tests
    assert "os._exit" not in program.tests


def test_pass_at_k_matches_the_unbiased_estimator():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 1, 2) == pytest.approx(1 - (4 * 3) / (5 * 4))


def test_pass_at_k_needs_k_samples():
    with pytest.raises(OptionError, match="at least 5 samples"):
        pass_at_k(2, 1, 5)


@sandboxed
def test_sampled_solutions_give_pass_at_1_and_pass_at_2(problems):
    problem = problems[0]
    codes = [[problem["canonical_solution"], "    return None\n", "    return None\n"]]
    result = score_solutions([problem], codes, ks=(1, 2), limits=QUICK)
    assert result.pass_at[1] == pytest.approx(1 / 3)
    assert result.pass_at[2] == pytest.approx(2 / 3)


@sandboxed
def test_a_tiny_model_is_evaluated_end_to_end(tiny_llama_dir, problems):
    from sftselect.evaluation.generation import GenerationSettings, load_for_generation
    from sftselect.evaluation.humaneval import evaluate_humaneval

    model, tokenizer = load_for_generation(tiny_llama_dir)
    result = evaluate_humaneval(model, tokenizer, problems[:2], GenerationSettings(max_new_tokens=8), limits=QUICK)
    assert result.tasks == 2 and result.prompt_style == "chat"
    assert result.pass_at[1] == 0.0  # random weights write no working code
    assert all(d["samples"][0]["status"] in ("failed", "timed out") for d in result.details)


@sandboxed
def test_humaneval_command_writes_pass_at_1_and_every_sample(tiny_llama_dir, tmp_path):
    import json

    from typer.testing import CliRunner

    from sftselect.cli import app

    report = tmp_path / "humaneval.json"
    outcome = CliRunner().invoke(
        app, ["eval", "humaneval", "--model", str(tiny_llama_dir), "--limit", "1", "--max-new-tokens", "4", "-o", str(report)]
    )
    assert outcome.exit_code == 0, outcome.output
    assert "pass@1\t0.0000" in outcome.output
    written = json.loads(report.read_text())
    assert written["pass_at"] == {"pass@1": 0.0} and written["details"][0]["task_id"] == "HumanEval/0"


def test_sampling_several_solutions_needs_a_temperature(tiny_llama_dir, tmp_path):
    from typer.testing import CliRunner

    from sftselect.cli import app

    outcome = CliRunner().invoke(app, ["eval", "humaneval", "--model", str(tiny_llama_dir), "--limit", "1", "--samples", "3"])
    assert isinstance(outcome.exception, OptionError)


@installed
def test_humaneval_command_without_bwrap_refuses_before_loading_the_model(tmp_path):
    environment = {**os.environ, "PATH": str(tmp_path)}  # no bwrap on this PATH
    done = subprocess.run(
        [str(SFTSELECT), "eval", "humaneval", "--model", str(tmp_path / "no-model"), "--limit", "1"],
        capture_output=True, text=True, env=environment, timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: refusing to run generated code without a sandbox: bubblewrap (bwrap) is not installed. Install "
        "bubblewrap (apt-get install bubblewrap) where user namespaces are allowed, or pass --unsafe-no-sandbox to "
        "run it anyway with only time and memory limits"
    ]


@installed
def test_humaneval_command_with_the_unsafe_flag_runs_without_bwrap(tiny_llama_dir, tmp_path):
    environment = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run(
        [str(SFTSELECT), "eval", "humaneval", "--model", str(tiny_llama_dir), "--limit", "1",
         "--max-new-tokens", "4", "--unsafe-no-sandbox"],
        capture_output=True, text=True, env=environment, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "WITHOUT a sandbox" in done.stderr and "pass@1\t0.0000" in done.stdout


@installed
def test_an_experiment_with_humaneval_refuses_without_bwrap_before_any_work(tmp_path):
    config = tmp_path / "experiment.yaml"
    config.write_text("data: pool.json\nmodel: some-model\nmethods: [random]\nfractions: [0.5]\n", encoding="utf-8")
    done = subprocess.run(
        [str(SFTSELECT), "experiment", str(config)], capture_output=True, text=True, env={**os.environ, "PATH": str(tmp_path)}, timeout=120
    )
    assert done.returncode == 2 and "refusing to run generated code without a sandbox" in done.stderr
    assert not (tmp_path / "experiment").exists()
