"""Hub dataset ids and dataset repository folders as input, read through the real `datasets.load_dataset`, never the network.

Two honest stand-ins for the Hub:
- a local dataset repository folder (data files and a README.md declaring subsets and splits),
  which `datasets.load_dataset(folder)` reads with the same module code as a Hub repository;
- an offline `datasets` cache of `owner/chat`, built by `datasets`' own builder from that
  folder. Offline, `load_dataset("owner/chat")` reads HF_DATASETS_CACHE/owner___chat/<subset>/
  <version>/<hash>/ (datasets.load.CachedDatasetModuleFactory, packaged_modules/cache). Loaded
  from the Hub, the builder writes its files there, named for the repository's name; from the
  folder it writes the same files under chat/, so the test moves that folder to owner___chat/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from typer.testing import CliRunner

from sftselect.cli import app
from sftselect.cli.options import read_arguments
from sftselect.errors import DataError, OptionError
from sftselect.io import read_dataset, stream_dataset, write_selection
from sftselect.io.hub import hub_id_of

SCRIPT = Path(sys.executable).with_name("sftselect")
HUB_ID = "owner/chat"
TRAIN = [{"instruction": f"Question {n}?", "input": "", "output": "Answer " + "word " * n} for n in range(1, 5)]
TEST = [{"instruction": "Held out?", "input": "", "output": "Yes."}, {"instruction": "Also?", "input": "", "output": "No."}]
CHATS = [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello there."}]}]
README = """---
configs:
- config_name: alpaca
  data_files:
  - split: train
    path: alpaca/train.jsonl
  - split: test
    path: alpaca/test.jsonl
- config_name: sharegpt
  data_files:
  - split: train
    path: sharegpt/train.jsonl
---
# chat
"""


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch) -> Path:
    """A `datasets` cache of this test's own, and the Hub out of reach, as HF_HUB_OFFLINE=1 makes it."""
    cache = tmp_path / "hf" / "datasets"
    cache.mkdir(parents=True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture
def repo(tmp_path) -> Path:
    """A dataset repository folder as on the Hub: two subsets, the first with a train and a test split."""
    folder = tmp_path / "src" / "chat"
    write_jsonl(folder / "alpaca" / "train.jsonl", TRAIN)
    write_jsonl(folder / "alpaca" / "test.jsonl", TEST)
    write_jsonl(folder / "sharegpt" / "train.jsonl", CHATS)
    (folder / "README.md").write_text(README)
    return folder


def cache_as_hub_dataset(repo: Path, cache: Path, subsets: tuple[str, ...] = ("alpaca", "sharegpt")) -> None:
    """Prepare the repository's subsets in `cache` where an online load_dataset("owner/chat") leaves them."""
    for subset in subsets:
        datasets.load_dataset_builder(str(repo), subset, cache_dir=str(cache)).download_and_prepare()
    shutil.move(cache / repo.name, cache / HUB_ID.replace("/", "___"))


def test_a_repository_folder_is_read_through_load_dataset_train_split_by_default(repo):
    data = read_dataset(repo, subset="alpaca")
    assert (data.format, data.container, len(data)) == ("alpaca", "hf_repo", 4)
    assert [record.original for record in data.records] == TRAIN
    assert [record.index for record in data.records] == [0, 1, 2, 3]


def test_subset_and_split_choose_what_is_read(repo):
    assert [record.original for record in read_dataset(repo, subset="alpaca", split="test").records] == TEST
    chats = read_dataset(repo, subset="sharegpt")
    assert chats.format == "sharegpt" and chats.records[0].pairs() == [("Hi", "Hello there.")]


def test_a_repository_with_several_subsets_asks_for_one(repo):
    with pytest.raises(OptionError, match=r"has several subsets \(alpaca, sharegpt\); choose one with --subset"):
        read_dataset(repo)


def test_an_unknown_split_or_subset_names_the_ones_there_are(repo):
    with pytest.raises(DataError, match=r"has no split 'valid' \(its splits: train, test\)"):
        read_dataset(repo, subset="alpaca", split="valid")
    with pytest.raises(DataError, match=r"has no subset 'code' \(its subsets: alpaca, sharegpt\)"):
        read_dataset(repo, subset="code")


def test_a_hub_id_is_read_from_the_offline_cache(repo, datasets_cache):
    cache_as_hub_dataset(repo, datasets_cache)
    data = read_dataset(HUB_ID, subset="alpaca")
    assert (data.container, data.path, data.name) == ("hf_repo", None, "owner/chat (subset alpaca)")
    assert [record.original for record in data.records] == TRAIN
    assert [record.original for record in read_dataset(HUB_ID, subset="alpaca", split="test").records] == TEST


def test_offline_the_cache_names_the_subsets_it_holds(repo, datasets_cache):
    cache_as_hub_dataset(repo, datasets_cache)
    with pytest.raises(OptionError, match=r"owner/chat has several subsets in the local datasets cache \(alpaca, sharegpt\)"):
        read_dataset(HUB_ID)
    with pytest.raises(DataError, match=r"owner/chat: has no subset 'code' in the local datasets cache \(cached: alpaca, sharegpt\)"):
        read_dataset(HUB_ID, subset="code")


def test_streaming_numbers_the_records_as_a_whole_load_does(repo, datasets_cache):
    cache_as_hub_dataset(repo, datasets_cache)
    whole = read_dataset(HUB_ID, subset="alpaca")
    streamed = read_dataset(HUB_ID, subset="alpaca", streaming=True)
    assert isinstance(streamed.source_object, datasets.IterableDataset)
    assert [(r.index, r.id, r.original) for r in streamed.records] == [(r.index, r.id, r.original) for r in whole.records]
    batches = list(stream_dataset(HUB_ID, batch_size=3, subset="alpaca", streaming=True))
    assert [len(batch) for batch in batches] == [3, 1]


def test_a_hub_selection_is_written_as_for_a_datasets_dataset(repo, datasets_cache, tmp_path):
    cache_as_hub_dataset(repo, datasets_cache)
    data = read_dataset(HUB_ID, subset="alpaca")
    write_selection(data, [2, 0], tmp_path / "sel")
    assert datasets.load_from_disk(str(tmp_path / "sel")).to_list() == [TRAIN[2], TRAIN[0]]
    write_selection(data, [2, 0], tmp_path / "sel.json")
    assert json.loads((tmp_path / "sel.json").read_text()) == [TRAIN[2], TRAIN[0]]
    write_selection(data, [1], tmp_path / "sel.parquet")
    assert datasets.load_dataset("parquet", data_files=str(tmp_path / "sel.parquet"), split="train").to_list() == [TRAIN[1]]


def test_select_writes_a_hub_selection_to_a_folder_when_out_has_no_extension(repo, datasets_cache, tmp_path):
    cache_as_hub_dataset(repo, datasets_cache)
    result = CliRunner().invoke(app, ["select", HUB_ID, "--subset", "alpaca", "-o", str(tmp_path / "sel"), "--top", "2",
                                      "--indices-out", str(tmp_path / "idx.txt"), "--no-cache"])
    assert result.exit_code == 0, result.output
    chosen = [int(line) for line in (tmp_path / "idx.txt").read_text().split()]
    assert datasets.load_from_disk(str(tmp_path / "sel")).to_list() == [TRAIN[number] for number in chosen]


def test_a_streamed_selection_keeps_the_features_in_a_folder(repo, datasets_cache, tmp_path):
    cache_as_hub_dataset(repo, datasets_cache)
    data = read_dataset(HUB_ID, subset="alpaca", streaming=True)
    write_selection(data, [3, 1], tmp_path / "sel", scores={"score": [0.0, 1.0, 2.0, 3.0]})
    saved = datasets.load_from_disk(str(tmp_path / "sel"))
    assert saved.to_list() == [{**TRAIN[3], "score": 3.0}, {**TRAIN[1], "score": 1.0}]
    assert saved.features["instruction"] == data.source_object.features["instruction"]


def test_a_local_path_wins_over_a_hub_id_of_the_same_spelling(repo, datasets_cache, tmp_path, monkeypatch):
    cache_as_hub_dataset(repo, datasets_cache)
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / HUB_ID / "train.jsonl", [{"prompt": "local", "completion": "copy"}])
    data = read_dataset(HUB_ID)
    assert data.path == Path(HUB_ID) and [record.original for record in data.records] == [{"prompt": "local", "completion": "copy"}]


def test_a_name_that_is_no_path_and_no_hub_id_is_no_such_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for name in ("nope", "data/missing", "owner/train.jsonl", "a/b/c"):
        assert hub_id_of(name) is None
        with pytest.raises(DataError, match=f"^{name}: no such file or folder$"):
            read_dataset(name)
    assert hub_id_of("tatsu-lab/alpaca") == "tatsu-lab/alpaca"


def test_repository_options_on_a_file_are_refused(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", TRAIN)
    with pytest.raises(OptionError, match="d.jsonl is a file: split applies only to a Hub dataset id or a dataset repository folder"):
        read_dataset(tmp_path / "d.jsonl", split="test")


def test_a_saved_dataset_dict_folder_reads_the_split_given(tmp_path):
    datasets.DatasetDict({"train": datasets.Dataset.from_list(TRAIN), "test": datasets.Dataset.from_list(TEST)}).save_to_disk(str(tmp_path / "dd"))
    assert [record.original for record in read_dataset(tmp_path / "dd", split="test").records] == TEST
    with pytest.raises(DataError, match=r"holds several splits \(train, test\); choose one with --split"):
        read_dataset(tmp_path / "dd")


def test_inspect_and_convert_take_subset_and_split(repo, tmp_path):
    runner = CliRunner()
    inspected = runner.invoke(app, ["inspect", str(repo), "--subset", "alpaca", "--split", "test", "--json"])
    assert inspected.exit_code == 0, inspected.output
    assert json.loads(inspected.stdout)["records"] == 2
    converted = runner.invoke(app, ["convert", str(repo), str(tmp_path / "m.jsonl"), "--to", "messages", "--subset", "sharegpt"])
    assert converted.exit_code == 0, converted.output
    assert json.loads((tmp_path / "m.jsonl").read_text())["messages"][1] == {"role": "assistant", "content": "Hello there."}


def test_analyze_reads_the_pools_split_and_each_selection_whole(repo, tmp_path):
    from sftselect.analysis.analyze import analyze_files

    write_jsonl(tmp_path / "sel.jsonl", TEST[:1])
    options = read_arguments(None, None, "raise", subset="alpaca", split="test")
    analysis = analyze_files(str(repo), [str(tmp_path / "sel.jsonl")], read_options=options, use_lm=False)
    assert [(group["name"], group["records"]) for group in analysis.summary()] == [("pool", 2), ("sel.jsonl", 1)]


def hub_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user offline, with this test's Hugging Face home."""
    return {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets"), "HF_HUB_OFFLINE": "1"}


def test_select_from_the_offline_cache_through_the_console_script(repo, datasets_cache, tmp_path):
    cache_as_hub_dataset(repo, datasets_cache)
    done = subprocess.run(
        [str(SCRIPT), "--quiet", "select", HUB_ID, "--subset", "alpaca", "-o", str(tmp_path / "sel.json"), "--top", "2",
         "--order", "input", "--indices-out", str(tmp_path / "idx.txt"), "--no-cache"],
        capture_output=True, text=True, env=hub_env(tmp_path), timeout=300,
    )
    assert done.returncode == 0, done.stderr
    chosen = [int(line) for line in (tmp_path / "idx.txt").read_text().split()]
    assert json.loads((tmp_path / "sel.json").read_text()) == [TRAIN[number] for number in chosen]
    assert done.stderr == ""


def test_an_uncached_hub_id_offline_is_one_error_line_saying_how_to_fix_it(tmp_path):
    done = subprocess.run(
        [str(SCRIPT), "select", "tatsu-lab/alpaca", "-o", str(tmp_path / "sel.json"), "--keep", "10%"],
        capture_output=True, text=True, env=hub_env(tmp_path), timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "error: tatsu-lab/alpaca: is not in the local datasets cache and the Hugging Face Hub cannot be reached "
        "(HF_HUB_OFFLINE is set); go online once to fetch it, or download it where you are online (hf download "
        "tatsu-lab/alpaca --repo-type dataset --local-dir alpaca) and give that folder instead\n"
    )


def test_every_command_that_reads_data_takes_the_hub_options():
    import typer

    commands = typer.main.get_command(app).commands
    for name in ("select", "pairs", "score", "embed", "analyze", "inspect", "convert"):
        flags = {flag for param in commands[name].params for flag in param.opts}
        assert {"--subset", "--split", "--revision", "--streaming"} <= flags, name
