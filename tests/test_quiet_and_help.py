"""-q/--quiet means nothing but errors, libraries' bars included; option help states the defaults the code uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from sftselect.cli import app
from sftselect.scorers.defaults import DEFAULT_COMPLEXITY_MODEL, DEFAULT_QUALITY_MODEL, DEFAULT_RANKER

SFTSELECT = Path(sys.executable).parent / "sftselect"
LOAD_THE_BUNDLED_NEURAL_RANKER = """
import sys
from sftselect.progress import set_quiet
if sys.argv[1] == "imported first":
    import transformers
set_quiet(True)
from sftselect.models.scar import StyleRanker
from sftselect.models.style_ranker import bundled_ranker_path
StyleRanker.from_pretrained(bundled_ranker_path("scar-minilm-l6"), device="cpu")
"""


@pytest.mark.parametrize("when", ["imported first", "imported after"])
def test_quiet_silences_the_transformers_loading_bars(when):
    completed = subprocess.run([sys.executable, "-c", LOAD_THE_BUNDLED_NEURAL_RANKER, when], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""


def test_quiet_select_with_the_bundled_ranker_prints_nothing(tmp_path):
    rows = [{"instruction": f"Question {i}?", "input": "", "output": f"Answer {i}."} for i in range(3)]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    completed = subprocess.run(
        [str(SFTSELECT), "-q", "select", str(tmp_path / "d.json"), "-o", str(tmp_path / "out.json"), "--top", "1", "--no-cache"],
        capture_output=True, text=True,
    )
    assert completed.returncode == 0, completed.stderr
    assert (completed.stdout, completed.stderr) == ("", "")
    assert len(json.loads((tmp_path / "out.json").read_text())) == 1


def option_help(command: str, option: str) -> str:
    params = typer.main.get_command(app).commands[command].params
    return next(" ".join(param.help.split()) for param in params if option in param.opts)


def test_the_ranker_help_names_the_ranker_select_uses_by_default():
    assert f"(default: the bundled {Path(DEFAULT_RANKER).name})" in option_help("select", "--ranker")


def test_the_score_model_help_names_the_default_deita_scorers():
    assert f"Default: {DEFAULT_COMPLEXITY_MODEL} or {DEFAULT_QUALITY_MODEL}." in option_help("score", "--model")
