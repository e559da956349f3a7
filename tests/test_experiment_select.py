"""An experiment's `select:` section: select's recipe keys, checked as recipes are, applied to every arm."""

from __future__ import annotations

import json

import pytest

from sftselect.cli.select import select_schema
from sftselect.errors import OptionError
from sftselect.experiment import load_config, run_experiment

HEAD = "data: train.json\nmodel: m\nmethods: [random]\nsizes: [6]\n"


def config(tmp_path, text: str):
    path = tmp_path / "experiment.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("select:\n  dedup: true\n  dedupe: true\n", r"experiment.yaml, line 7: unknown key 'dedupe'; did you mean 'dedup'\?"),
        ("select:\n  keep: 10%\n", r"experiment.yaml, line 6: an experiment sets keep itself"),
        ("select:\n  near_dedup_threshold: high\n", r"experiment.yaml, line 6: near_dedup_threshold takes a number, got \"high\""),
        ("select: [dedup]\n", r"experiment.yaml, line 5: select is a mapping"),
    ],
)
def test_a_bad_select_section_names_the_key_and_its_line(tmp_path, section, expected):
    with pytest.raises(OptionError, match=expected):
        load_config(config(tmp_path, HEAD + section), select_schema())


def test_the_select_section_reads_aliases_and_fills_defaults(tmp_path):
    loaded = load_config(config(tmp_path, HEAD + "select:\n  threshold: 0.8\n  near_dedup: true\n"), select_schema())

    assert loaded.selection["diversity"] == 0.8 and loaded.selection["near_dedup"] is True
    assert loaded.selection["near_dedup_threshold"] == 0.8 and loaded.selection["dedup"] is False


def test_the_select_section_filters_every_arms_selection(tmp_path, tiny_llama_dir):
    from _chat_server import ChatServer

    rows = [{"instruction": f"Say {i}.", "input": "", "output": f"{i}"} for i in range(6)]
    (tmp_path / "train.json").write_text(json.dumps(rows + rows), encoding="utf-8")  # each record twice
    (tmp_path / "q.json").write_text(json.dumps([{"instruction": "Say 1.", "output": "1"}]), encoding="utf-8")
    with ChatServer(lambda messages: "[[A]]") as server:
        path = config(tmp_path, (
            f"data: train.json\nmodel: {tiny_llama_dir}\noutput_dir: runs\nmethods: [random]\nsizes: [6]\n"
            "evaluate_base: false\nfinetune: {max_steps: 1, batch_size: 2, max_length: 64}\n"
            f"eval:\n  judge: {{questions: q.json, base_url: '{server.base_url}', limit: 1, max_new_tokens: 2, cache: false}}\n"
            "select:\n  dedup: true\n"
        ))
        run_experiment(load_config(path, select_schema()))

    positions = json.loads((tmp_path / "runs" / "selections" / "random-6.json").read_text())["positions"]
    assert sorted(positions) == [0, 1, 2, 3, 4, 5]
