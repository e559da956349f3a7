"""Recipes: `sftselect run RECIPE.yaml` does what `select` does, and OUT.recipe.yaml re-runs any selection exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sftselect.cli.select import select_schema
from sftselect.errors import OptionError
from sftselect.io.recipes import read_recipe

SCRIPT = Path(sys.executable).with_name("sftselect")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "recipes"


def sftselect(folder: Path, *arguments: str, quiet: bool = True) -> subprocess.CompletedProcess:
    if not SCRIPT.exists():
        pytest.skip(f"the console script is not installed beside {sys.executable}")
    command = [str(SCRIPT), *(["--quiet"] if quiet else []), *arguments]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rows = [{"instruction": f"Question {i}?", "input": "", "output": "A fine answer, well put. " * (i % 5 + 1) + str(i)} for i in range(16)]
    rows.append(dict(rows[3]))  # an exact duplicate for --dedup
    (tmp_path / "pool.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_run_writes_the_same_bytes_as_the_equivalent_select(folder):
    write(folder / "r.yaml", "input: pool.json\noutput: run.json\nkeep: 30%\ndedup: true\nwith_scores: true\norder: input\n")

    assert sftselect(folder, "select", "pool.json", "-o", "select.json", "--keep", "30%", "--dedup", "--with-scores", "--order", "input").returncode == 0
    assert sftselect(folder, "run", "r.yaml").returncode == 0

    assert (folder / "run.json").read_bytes() == (folder / "select.json").read_bytes()
    by_select = (folder / "select.json.recipe.yaml").read_text(encoding="utf-8").replace("select.json", "run.json")
    assert (folder / "run.json.recipe.yaml").read_text(encoding="utf-8") == by_select


def test_the_written_recipe_has_every_key_the_version_and_the_scorer_identity(folder):
    assert sftselect(folder, "select", "pool.json", "-o", "best.json", "--top", "4").returncode == 0

    recipe = yaml.safe_load((folder / "best.json.recipe.yaml").read_text(encoding="utf-8"))

    from sftselect import __version__

    assert recipe["sftselect"] == __version__
    assert [key for key in recipe if key not in ("sftselect", "models")] == [key.name for key in select_schema().keys]
    assert recipe["top"] == 4 and recipe["keep"] is None and recipe["method"] == "scar" and recipe["near_dedup_threshold"] == 0.8
    assert recipe["models"]["scorer"]["scorer"] == "scar" and len(recipe["models"]["scorer"]["weights_sha256"]) == 64


def test_a_written_recipe_reruns_the_selection_byte_for_byte(folder):
    assert sftselect(folder, "select", "pool.json", "-o", "best.json", "--keep", "25%", "--explain", "why.jsonl").returncode == 0
    first = (folder / "best.json").read_bytes()

    elsewhere = sftselect(folder, "run", "best.json.recipe.yaml", "--set", "output=again.json", "--set", "explain=again.why.jsonl")
    in_place = sftselect(folder, "run", "best.json.recipe.yaml", "--overwrite")

    assert elsewhere.returncode == 0 and in_place.returncode == 0, elsewhere.stderr + in_place.stderr
    assert (folder / "again.json").read_bytes() == first == (folder / "best.json").read_bytes()
    assert (folder / "again.why.jsonl").read_bytes() == (folder / "why.jsonl").read_bytes()


def test_a_rerun_notes_models_that_differ_from_those_the_recipe_records(folder):
    assert sftselect(folder, "select", "pool.json", "-o", "best.json", "--top", "4").returncode == 0
    recipe = folder / "best.json.recipe.yaml"

    same = sftselect(folder, "run", recipe.name, "--set", "output=same.json", quiet=False)
    recipe.write_text(recipe.read_text(encoding="utf-8").replace("weights_sha256: ", "weights_sha256: 0"), encoding="utf-8")
    changed = sftselect(folder, "run", recipe.name, "--set", "output=changed.json", quiet=False)

    assert same.returncode == 0 and changed.returncode == 0
    assert "note:" not in same.stderr
    assert "note: models differ from those best.json.recipe.yaml records (scorer:" in changed.stderr


def test_the_recipe_records_the_embedder_when_the_diversity_filter_embeds(folder):
    assert sftselect(folder, "select", "pool.json", "-o", "best.json", "--top", "5", "--diversity", "0.9").returncode == 0

    models = yaml.safe_load((folder / "best.json.recipe.yaml").read_text(encoding="utf-8"))["models"]

    assert models["embedder"]["embedder"] == "sentence-transformers" and "scorer" in models
    assert sftselect(folder, "run", "best.json.recipe.yaml", "--set", "output=again.json").returncode == 0
    assert (folder / "again.json").read_bytes() == (folder / "best.json").read_bytes()


def test_a_comparison_writes_its_recipe_beside_its_folder_and_reruns_from_it(folder):
    assert sftselect(folder, "select", "pool.json", "--compare", "random,longest", "-o", "cmp", "--top", "3", "--no-lm").returncode == 0

    recipe = yaml.safe_load((folder / "cmp.recipe.yaml").read_text(encoding="utf-8"))

    assert recipe["compare"] == "random,longest" and set(recipe["models"]) == {"random", "longest"}
    assert sftselect(folder, "run", "cmp.recipe.yaml", "--set", "output=again").returncode == 0
    assert (folder / "again" / "random.json").read_bytes() == (folder / "cmp" / "random.json").read_bytes()


def test_an_existing_recipe_beside_the_output_is_refused_before_any_work(folder):
    write(folder / "best.json.recipe.yaml", "my notes\n")

    error = one_line_error(sftselect(folder, "select", "pool.json", "-o", "best.json", "--top", "3"))

    assert "best.json.recipe.yaml already exists" in error and "--overwrite" in error
    assert not (folder / "best.json").exists() and (folder / "best.json.recipe.yaml").read_text() == "my notes\n"


def test_indices_alone_get_their_recipe_beside_them(folder):
    assert sftselect(folder, "select", "pool.json", "--indices-out", "chosen.txt", "--top", "3").returncode == 0

    assert yaml.safe_load((folder / "chosen.txt.recipe.yaml").read_text(encoding="utf-8"))["indices_out"] == "chosen.txt"


@pytest.mark.parametrize(
    ("recipe", "overrides", "expected"),
    [
        ("input: pool.json\noutput: o.json\nkeep: 10%\ndedupe: true\n", [], "r.yaml, line 4: unknown key 'dedupe'; did you mean 'dedup'?"),
        ("input: pool.json\noutput: o.json\ntop: many\n", [], "r.yaml, line 3: top takes a whole number, got \"many\""),
        ("input: pool.json\noutput: o.json\nkeep: 10%\ndedup: 1\n", [], "r.yaml, line 4: dedup takes true or false, got 1"),
        ("input: pool.json\nkeep: 10%\nkeep: 20%\n", [], "r.yaml, line 3: keep is given twice (also at r.yaml, line 2)"),
        ("input: pool.json\ntop: 3\nbudget: 4\n", [], "r.yaml, line 3: budget sets the same option as top; give one of them"),
        ("output: o.json\nkeep: 10%\n", [], "r.yaml: the key 'input' is required"),
        ("- input: pool.json\n", [], "r.yaml, line 1: a recipe is a mapping of `key: value` settings"),
        ("input: pool.json\nkeep: [10%\n", [], "r.yaml, line 3: not valid YAML"),
        ("input: pool.json\noutput: o.json\nkeep: 10%\n", ["colour=red"], "--set colour: unknown key 'colour'"),
        ("input: pool.json\noutput: o.json\nkeep: 10%\n", ["seed=x"], "--set seed: seed takes a whole number, got \"x\""),
        ("input: pool.json\noutput: o.json\nkeep: 10%\n", ["keep"], "--set keep: give KEY=VALUE"),
    ],
)
def test_a_bad_recipe_is_one_line_naming_the_key_and_where(folder, recipe, overrides, expected):
    write(folder / "r.yaml", recipe)

    error = one_line_error(sftselect(folder, "run", "r.yaml", *[item for text in overrides for item in ("--set", text)]))

    assert expected in error
    assert sorted(path.name for path in folder.iterdir()) == ["pool.json", "r.yaml"]


def test_a_missing_recipe_is_one_line_naming_it(folder):
    assert "cannot read the recipe nowhere.yaml" in one_line_error(sftselect(folder, "run", "nowhere.yaml"))


def test_set_overrides_the_recipe_and_reads_values_as_yaml(folder):
    write(folder / "r.yaml", "input: pool.json\noutput: o.json\nkeep: 10%\n")

    assert sftselect(folder, "run", "r.yaml", "--set", "keep=50%", "--set", "dedup=true", "--set", "order=input").returncode == 0

    recipe = yaml.safe_load((folder / "o.json.recipe.yaml").read_text(encoding="utf-8"))
    assert (recipe["keep"], recipe["dedup"], recipe["order"]) == ("50%", True, "input")
    positions = [int(row["output"].rsplit(" ", 1)[1]) for row in json.loads((folder / "o.json").read_text())]
    assert len(positions) == 8 and positions == sorted(positions)


def test_every_long_flag_of_select_is_a_recipe_key():
    import typer.main

    from sftselect.cli import app
    from sftselect.cli.select import NOT_RECIPE_KEYS

    command = typer.main.get_command(app).commands["select"]
    params = [param for param in command.params if param.name != "help" and param.name not in NOT_RECIPE_KEYS]
    flags = [flag for param in params for flag in param.opts if flag.startswith("--")]
    schema = select_schema()

    assert flags and all(schema.key(flag[2:].replace("-", "_"), "test").parameter for flag in flags)
    assert {key.parameter for key in schema.keys} == {param.name for param in params}
    assert NOT_RECIPE_KEYS == {"estimate"}


@pytest.mark.parametrize("name", ["scar-top10-dedup.yaml", "deita-budget-diversity.yaml", "ray-engine.yaml"])
def test_the_example_recipes_are_valid(name):
    path = EXAMPLES / name

    options = select_schema().resolve(str(path), read_recipe(path))

    assert options["source"] and options["output"]
    assert sum(options[budget] is not None for budget in ("keep", "top", "min_score")) == 1


def test_the_deita_example_reads_its_aliases_as_budget_and_diversity():
    options = select_schema().resolve("deita", read_recipe(EXAMPLES / "deita-budget-diversity.yaml"))

    assert (options["method"], options["top"], options["diversity"]) == ("deita", 6000, 0.9)


def test_a_wrong_value_in_a_recipe_read_from_python_is_an_option_error(tmp_path):
    with pytest.raises(OptionError, match=r"r.yaml, line 2: near_dedup_threshold takes a number"):
        select_schema().resolve("r.yaml", read_recipe(write(tmp_path / "r.yaml", "input: x\nnear_dedup_threshold: high\n")))


def test_the_scar_example_runs_on_real_data(shared_data, tmp_path):
    source = shared_data / "alpaca" / "llamafactory_alpaca_en_demo.json"

    result = sftselect(
        tmp_path, "run", str(EXAMPLES / "scar-top10-dedup.yaml"), "--set", f"input={source}",
        "--set", "output=best.json", "--set", "explain=why.jsonl",
    )

    assert result.returncode == 0, result.stderr
    chosen = json.loads((tmp_path / "best.json").read_text(encoding="utf-8"))
    explained = [json.loads(line) for line in (tmp_path / "why.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(explained) == len(json.loads(source.read_text(encoding="utf-8")))
    assert len(chosen) == sum(line["kept"] for line in explained) > 0
    assert sftselect(tmp_path, "run", "best.json.recipe.yaml", "--set", "output=again.json", "--set", "explain=again.jsonl").returncode == 0
    assert (tmp_path / "again.json").read_bytes() == (tmp_path / "best.json").read_bytes()
