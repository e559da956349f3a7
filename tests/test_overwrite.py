"""What a command may replace: never an input or a folder holding other files; every destination checked before work."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sftselect.cli import app
from sftselect.errors import OptionError
from sftselect.io import read_dataset, write_selection
from sftselect.io.atomic import SAVED_DATASET, Output, atomic_text, check_outputs, remove_stale_temporaries, temporary_beside
from sftselect.scorers import registry

runner = CliRunner()
ROWS = [{"instruction": f"question {n}", "output": f"answer number {n} " * (n + 1)} for n in range(6)]
SCRIPT = shutil.which("sftselect") or str(Path(sys.executable).with_name("sftselect"))


@pytest.fixture
def scored(monkeypatch) -> list[int]:
    """A `--method recording` scorer that records how many records it was asked to score."""
    calls: list[int] = []

    class RecordingScorer:
        name = "recording"
        identity = {"name": "recording", "version": 1}

        def score(self, records):
            calls.append(len(records))
            return np.arange(len(records), dtype=np.float64)

    def recording(model=None, *, batch_size=None, device=None):
        return RecordingScorer()

    monkeypatch.setitem(registry.SCORERS._factories, "recording", recording)
    monkeypatch.setitem(registry.SCORERS._extras, "recording", {})
    return calls


def select(*arguments: str):
    return runner.invoke(app, ["select", *arguments, "--method", "recording", "--top", "2", "--no-cache"])


def pool(folder: Path, name: str = "pool.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(ROWS))
    return path


def saved_dataset(folder: Path) -> Path:
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(folder))
    return folder


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_select_overwrite_refuses_a_folder_holding_a_user_file_and_the_input(tmp_path, scored):
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("my notes")
    dataset = saved_dataset(home / "dataset")
    before = tree(home)

    result = select(str(dataset), "-o", str(home), "--overwrite")

    assert result.exit_code != 0 and "holds the input" in str(result.exception)
    assert tree(home) == before
    assert scored == []


def test_select_overwrite_refuses_a_folder_that_is_not_a_saved_dataset(tmp_path, scored):
    dataset = saved_dataset(tmp_path / "dataset")
    other = tmp_path / "other"
    other.mkdir()
    (other / "state.json").write_text("{}")
    (other / "thesis.tex").write_text("years of work")
    before = tree(other)

    result = select(str(dataset), "-o", str(other), "--overwrite")

    assert result.exit_code != 0 and "thesis.tex" in str(result.exception)
    assert "--overwrite replaces only a `datasets` save_to_disk folder" in str(result.exception)
    assert tree(other) == before and scored == []


def test_select_overwrite_replaces_its_own_earlier_saved_dataset(tmp_path, scored):
    dataset = saved_dataset(tmp_path / "dataset")
    out = tmp_path / "selection"
    assert select(str(dataset), "-o", str(out)).exit_code == 0
    assert select(str(dataset), "-o", str(out)).exit_code != 0

    result = select(str(dataset), "-o", str(out), "--overwrite", "--order", "input")

    assert result.exit_code == 0, result.output
    assert [r.original["instruction"] for r in read_dataset(out).records] == ["question 4", "question 5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "selection", "selection.recipe.yaml"]


def test_an_output_inside_the_input_folder_is_refused(tmp_path, scored):
    dataset = saved_dataset(tmp_path / "dataset")

    result = select(str(dataset), "-o", str(dataset / "picked.json"))

    assert result.exit_code != 0 and "inside the input" in str(result.exception)
    assert not (dataset / "picked.json").exists() and scored == []


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_analyze_html_onto_the_pool_is_refused(tmp_path, overwrite):
    source = pool(tmp_path)
    selection = pool(tmp_path, "sel.json")

    result = runner.invoke(app, ["analyze", str(source), "--selected", str(selection), "--no-lm",
                                 "--html", str(source), "--json", str(selection), *overwrite])

    assert result.exit_code != 0 and "is the input" in str(result.exception)
    assert json.loads(source.read_text()) == ROWS and json.loads(selection.read_text()) == ROWS


def test_analyze_replaces_an_existing_report_only_with_overwrite(tmp_path):
    source = pool(tmp_path)
    report = tmp_path / "report.json"
    report.write_text("earlier")

    refused = runner.invoke(app, ["analyze", str(source), "--no-lm", "--json", str(report)])
    assert refused.exit_code != 0 and "already exists" in str(refused.exception)
    assert report.read_text() == "earlier"

    replaced = runner.invoke(app, ["analyze", str(source), "--no-lm", "--json", str(report), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert json.loads(report.read_text())["groups"][0]["records"] == len(ROWS)


def test_analyze_json_and_html_to_one_path_is_refused(tmp_path):
    result = runner.invoke(app, ["analyze", str(pool(tmp_path)), "--no-lm", "--json", str(tmp_path / "r"), "--html", str(tmp_path / "r")])
    assert result.exit_code != 0 and "named as two outputs" in str(result.exception)
    assert not (tmp_path / "r").exists()


LLM = ["--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--no-cache"]


@pytest.mark.parametrize(
    "command",
    [
        lambda tmp, taken: ["ranker", "synth", str(pool(tmp)), "-o", str(taken), *LLM],
        lambda tmp, taken: ["ranker", "judge", str(pool(tmp)), "-o", str(taken), *LLM],
        lambda tmp, taken: ["eval", "humaneval", "--model", str(tmp / "no-model"), "-o", str(taken)],
        lambda tmp, taken: ["eval", "judge", "--model", str(tmp / "no-model"), "--questions", str(pool(tmp)),
                            "--judge-base-url", "http://127.0.0.1:9/v1", "-o", str(taken)],
        lambda tmp, taken: ["score", str(pool(tmp)), "-o", str(taken), "--model", str(tmp / "no-model")],
        lambda tmp, taken: ["convert", str(pool(tmp)), str(taken), "--to", "messages"],
    ],
    ids=["ranker-synth", "ranker-judge", "eval-humaneval", "eval-judge", "score", "convert"],
)
def test_commands_keep_an_existing_output_file_without_overwrite(tmp_path, command):
    taken = tmp_path / "taken.jsonl"
    taken.write_text("keep me")

    result = runner.invoke(app, command(tmp_path, taken))

    assert result.exit_code != 0 and "already exists" in str(result.exception)
    assert taken.read_text() == "keep me"


@pytest.mark.parametrize(
    "command",
    [
        lambda source: ["ranker", "synth", str(source), "-o", str(source), "--overwrite", *LLM],
        lambda source: ["ranker", "judge", str(source), "-o", str(source), "--overwrite", *LLM],
        lambda source: ["eval", "judge", "--model", "none", "--questions", str(source),
                        "--judge-base-url", "http://127.0.0.1:9/v1", "-o", str(source), "--overwrite"],
        lambda source: ["score", str(source.with_name("data.json")), "-o", str(source), "--reuse", str(source), "--overwrite"],
    ],
    ids=["ranker-synth", "ranker-judge", "eval-judge", "score-reuse"],
)
def test_commands_never_replace_an_input_even_with_overwrite(tmp_path, command):
    source = pool(tmp_path, "input.jsonl")

    result = runner.invoke(app, command(source))

    assert result.exit_code != 0 and "is the input" in str(result.exception)
    assert json.loads(source.read_text()) == ROWS


def test_a_hard_link_to_the_input_counts_as_the_input(tmp_path, scored):
    source = pool(tmp_path)
    os.link(source, tmp_path / "alias.json")

    result = select(str(source), "-o", str(tmp_path / "alias.json"), "--overwrite")

    assert result.exit_code != 0 and "is the input" in str(result.exception)
    assert json.loads(source.read_text()) == ROWS and scored == []


def test_embed_refuses_an_existing_ids_file_before_loading_a_model(tmp_path):
    (tmp_path / "emb.ids.json").write_text("mine")

    result = runner.invoke(app, ["embed", str(pool(tmp_path)), "-o", str(tmp_path / "emb.npy"), "--embedder", "lm",
                                 "--model", str(tmp_path / "no-model")])

    assert result.exit_code != 0 and "emb.ids.json already exists" in str(result.exception)


def test_finetune_overwrite_refuses_a_folder_that_no_run_wrote(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "finetune.json").write_text("{}")
    (out / "data.csv").write_text("mine")

    result = runner.invoke(app, ["finetune", str(pool(tmp_path)), "--model", str(tmp_path / "no-model"), "-o", str(out), "--overwrite"])

    assert result.exit_code != 0 and "data.csv" in str(result.exception)
    assert (out / "data.csv").read_text() == "mine"


def test_ranker_train_refuses_an_existing_folder_without_overwrite(tmp_path):
    out = tmp_path / "ranker"
    out.mkdir()
    (out / "config.json").write_text("{}")
    triples = tmp_path / "t.jsonl"
    triples.write_text(json.dumps({"instruction": "a", "human": "b"}) + "\n")

    refused = runner.invoke(app, ["ranker", "train", str(triples), "-o", str(out), "--encoder", str(tmp_path / "no-encoder")])
    assert refused.exit_code != 0 and "already exists" in str(refused.exception)

    (out / "holiday.jpg").write_text("photo")
    forced = runner.invoke(app, ["ranker", "train", str(triples), "-o", str(out), "--encoder", "x", "--overwrite"])
    assert forced.exit_code != 0 and "holiday.jpg" in str(forced.exception)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "holiday.jpg"]


def test_experiment_refuses_an_output_dir_holding_other_files(tmp_path):
    from sftselect.experiment import check_output_folder

    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "steps.json").write_text("{}")
    (folder / "scores").mkdir()
    check_output_folder(folder)
    (folder / "paper.pdf").write_text("draft")
    with pytest.raises(OptionError, match="paper.pdf"):
        check_output_folder(folder)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (lambda tmp: ["-o", str(tmp / "missing" / "out.json")], "does not exist"),
        (lambda tmp: ["-o", str(tmp / "taken.json")], "already exists"),
        (lambda tmp: ["-o", str(tmp / "same.txt"), "--indices-out", str(tmp / "same.txt")], "named as two outputs"),
        (lambda tmp: ["-o", str(tmp / "pool.json"), "--overwrite"], "is the input"),
        (lambda tmp: ["-o", str(tmp / "a.json"), "--scores", str(tmp / "taken.json"), "--indices-out", str(tmp / "taken.json"),
                      "--overwrite"], "is the input"),
        (lambda tmp: ["-o", str(tmp / "folder"), "--overwrite"], "is a folder"),
    ],
    ids=["folder-missing", "file-exists", "same-path-twice", "output-is-input", "output-is-scores-input", "folder-for-a-file"],
)
def test_select_finds_destination_problems_before_scoring(tmp_path, scored, arguments, message):
    source = pool(tmp_path)
    (tmp_path / "taken.json").write_text("keep")
    (tmp_path / "folder").mkdir()

    result = select(str(source), *arguments(tmp_path))

    assert result.exit_code != 0 and message in str(result.exception)
    assert scored == []
    assert (tmp_path / "taken.json").read_text() == "keep"


def test_compare_finds_an_existing_selection_before_scoring(tmp_path, scored):
    source = pool(tmp_path)
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "random.json").write_text("earlier")

    result = runner.invoke(app, ["select", str(source), "--compare", "recording,random", "-o", str(out), "--top", "2", "--no-lm"])

    assert result.exit_code != 0 and "random.json already exists" in str(result.exception)
    assert scored == [] and (out / "random.json").read_text() == "earlier"


def test_an_output_inside_an_output_folder_is_refused(tmp_path):
    with pytest.raises(OptionError, match="inside the output folder"):
        check_outputs([Output(tmp_path / "ds", SAVED_DATASET), tmp_path / "ds" / "indices.txt"], [], overwrite=True)


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    dest = tmp_path / "out.jsonl"
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from sftselect.io.atomic import atomic_text
            with atomic_text({str(dest)!r}) as handle:
                handle.write("half a record")
                handle.flush()
                print("writing", flush=True)
                time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    assert writer.stdout.readline() == "writing\n"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".out.jsonl.{writer.pid}.")

    write_selection(read_dataset(pool(tmp_path)), [0], dest)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "pool.json"]


def test_stale_cleanup_keeps_temporaries_of_running_writers_and_other_names(tmp_path):
    dest = tmp_path / "out.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    own = temporary_beside(dest)
    live_folder = temporary_beside(dest, folder=True)
    host = own.name.split(".")[4]
    stale = tmp_path / f".out.json.{dead}.{host}.abcdefgh.tmp"
    stale.write_text("left by a kill -9")
    foreign_host = tmp_path / f".out.json.{dead}.elsewhere.abcdefgh.tmp"
    foreign_host.write_text("written from another machine")
    unrelated = [tmp_path / ".out.json.tmp", tmp_path / ".other.json.1.x.abcdefgh.tmp", tmp_path / "out.json.1.tmp"]
    for path in unrelated:
        path.write_text("not ours")

    assert remove_stale_temporaries(dest) == [stale]

    assert sorted(tmp_path.iterdir()) == sorted([own, live_folder, foreign_host, *unrelated])


def test_a_failed_check_writes_nothing_and_an_empty_folder_may_receive_a_dataset(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    check_outputs([Output(empty, SAVED_DATASET)], [], overwrite=False)
    with pytest.raises(OptionError, match="already exists"):
        check_outputs([empty], [], overwrite=False)
    with atomic_text(tmp_path / "x.txt") as handle:
        handle.write("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "x.txt"]


def _console_script() -> str:
    if not Path(SCRIPT).exists():
        pytest.skip(f"the sftselect console script is not installed beside {sys.executable}")
    return SCRIPT


def test_console_script_refuses_the_folder_deletion_case_in_one_line(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("my notes")
    dataset = saved_dataset(home / "dataset")
    before = tree(home)

    done = subprocess.run([_console_script(), "select", str(dataset), "-o", str(home), "--overwrite", "--top", "1"],
                          capture_output=True, text=True, timeout=120)

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {home} holds the input {dataset}; choose an output that does not contain it"]
    assert tree(home) == before


def test_console_script_refuses_a_read_only_folder_before_any_work(tmp_path):
    bwrap = shutil.which("bwrap")
    if bwrap is None or subprocess.run([bwrap, "--bind", "/", "/", "true"], capture_output=True).returncode != 0:
        pytest.skip("bubblewrap (Debian: bubblewrap) is needed to make a read-only folder for root")
    locked = tmp_path / "locked"
    locked.mkdir()
    source = pool(tmp_path)

    done = subprocess.run(
        [bwrap, "--bind", "/", "/", "--dev", "/dev", "--ro-bind", str(locked), str(locked),
         _console_script(), "select", str(source), "-o", str(locked / "out.json"), "--top", "1", "--ranker", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=120,
    )

    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {locked / 'out.json'}: the folder {locked} is not writable (permission denied)"
