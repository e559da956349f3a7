"""The Ray engine reads, scores, embeds and writes what the local engine does, on one local Ray cluster per module."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from sftselect.cli import app
from sftselect.engine.cache import ScoreCache
from sftselect.engine.engines import get_engine
from sftselect.engine.local import LocalEngine
from sftselect.engine.ray_engine import RayEngine
from sftselect.errors import DataError, OptionError
from sftselect.io.results import read_scores
from sftselect.models.deita import PromptScores
from sftselect.records import Record, Turn

ray = pytest.importorskip("ray", reason="the Ray engine needs the extra: pip install 'sftselect[ray]'")
pytest.importorskip("ray.data", reason="the Ray engine needs Ray Data: pip install 'sftselect[ray]'")


class WordCountScorer:
    """A deterministic scorer that needs no model, so its Ray actors start fast."""

    name = "word-count"
    identity = {"name": "word-count"}

    def score(self, records):
        return np.array([len(r.turns[-1].text.split()) + 1 / (1 + len(r.instruction)) for r in records])


class WordStatsEmbedder:
    """A deterministic embedder: word count, character count and vowel share of the response."""

    name = "word-stats"
    identity = {"name": "word-stats", "dim": 3}

    def embed(self, records):
        rows = []
        for record in records:
            text = record.turns[-1].text
            vowels = sum(text.count(v) for v in "aeiou")
            rows.append([len(text.split()), len(text), vowels / max(len(text), 1)])
        return np.array(rows, dtype=np.float32)


class WordCountPromptModel:
    """A deterministic stand-in for a deita prompt model: scores from word counts, long prompts marked truncated."""

    identity = {"model": "word-count-prompts"}

    def complexity(self, instructions):
        return self._scores(instructions)

    def quality(self, instructions, responses):
        return self._scores([f"{i} {r}" for i, r in zip(instructions, responses)])

    def _scores(self, texts):
        counts = np.array([len(text.split()) for text in texts], dtype=np.float64)
        return PromptScores(scores=1 + counts / (1 + counts), truncated=counts > 8)


class DeviceScorer:
    """Scores each record with the number of moves to the CPU it went through, so a result tells where it was put."""

    name = "device"
    identity = {"name": "device"}

    def __init__(self):
        self.moves: list[str] = []

    def to(self, device):
        self.moves.append(device)
        return self

    def score(self, records):
        return np.full(len(records), float(self.moves.count("cpu")) if set(self.moves) == {"cpu"} else -1.0)


class RefusingScorer:
    """Refuses every record, as a scorer does with a record it cannot score."""

    name = "refusing"
    identity = {"name": "refusing"}

    def score(self, records):
        raise DataError("input", "has no response to score", record=records[0].index)


@pytest.fixture(scope="module")
def local_ray():
    # Classes defined in this test module travel to the workers by value, not by import.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started_here:
        ray.shutdown()


@pytest.fixture(scope="module")
def scar_scorer(tiny_bert_dir):
    from sftselect.models.scar import StyleRanker
    from sftselect.scorers.scar import ScarScorer

    return ScarScorer(StyleRanker.from_encoder(str(tiny_bert_dir)), batch_size=8, max_length=64, show_progress=False)


def make_records(count: int) -> list[Record]:
    topics = ["rivers", "prime numbers", "bread", "sorting lists", "volcanoes", "poetry", "tides", "compilers"]
    records = []
    for i in range(count):
        topic = topics[i % len(topics)]
        question = f"Explain {topic} to a beginner ({i % 5} paragraphs)."
        answer = " ".join([f"{topic.capitalize()} are interesting."] * (1 + i % 7)) + f" Note {i * 37 % 11}."
        records.append(Record(str(i), (Turn("user", question), Turn("assistant", answer)), {}, i))
    return records


def top_k(scores: np.ndarray, k: int) -> list[int]:
    return np.argsort(-scores, kind="stable")[:k].tolist()


def test_ray_scores_and_selection_equal_local(local_ray, scar_scorer):
    records = make_records(60)
    local = LocalEngine().score(records, scar_scorer)
    distributed = RayEngine(batch_size=16, num_actors=1, block_size=10).score(records, scar_scorer)
    np.testing.assert_allclose(distributed, local, rtol=0, atol=1e-6)
    assert top_k(distributed, 15) == top_k(local, 15)


def test_ray_embeddings_equal_local(local_ray):
    records = make_records(40)
    local = LocalEngine().embed(records, WordStatsEmbedder())
    distributed = RayEngine(batch_size=7, num_actors=2, block_size=9).embed(records, WordStatsEmbedder())
    assert distributed.dtype == np.float32 and np.array_equal(distributed, local)


def test_ray_engine_computes_only_records_missing_from_the_cache(local_ray, tmp_path):
    cache = ScoreCache(tmp_path / "scores.sqlite")
    LocalEngine(cache).score(make_records(30), WordCountScorer())
    engine = RayEngine(cache=cache, batch_size=4, chunk_size=3, block_size=5)
    grown = engine.score(make_records(40), WordCountScorer())
    assert engine.last_computed == 10
    np.testing.assert_array_equal(grown, LocalEngine().score(make_records(40), WordCountScorer()))
    assert cache.info()["entries"] == 40


def test_get_engine_checks_its_options():
    assert isinstance(get_engine("ray", ray_address="ray://head:10001"), RayEngine)
    with pytest.raises(OptionError, match="--ray-address needs --engine ray"):
        get_engine("local", ray_address="ray://head:10001")
    with pytest.raises(OptionError, match="unknown engine 'spark'"):
        get_engine("spark")


def test_ray_actors_put_models_on_the_cpu_when_ray_gave_them_no_gpu(local_ray):
    # Two moves: the driver sends the model from its CPU, the actor places it on its own CPU.
    np.testing.assert_array_equal(RayEngine(num_actors=1).score(make_records(5), DeviceScorer()), np.full(5, 2.0))


def test_an_error_raised_on_a_ray_worker_reaches_the_driver_as_itself(local_ray):
    with pytest.raises(DataError) as raised:
        RayEngine(num_actors=1).score(make_records(3), RefusingScorer())
    assert str(raised.value) == "input, record 0: has no response to score"


def test_ray_prompt_scores_equal_local_and_share_the_cache(local_ray, tmp_path):
    instructions = [record.instruction for record in make_records(30)]
    responses = [record.turns[-1].text for record in make_records(30)]
    local = LocalEngine().prompt_model(WordCountPromptModel())
    cache = ScoreCache(tmp_path / "scores.sqlite")
    LocalEngine(cache).prompt_model(WordCountPromptModel()).quality(instructions[:20], responses[:20])
    engine = RayEngine(cache=cache, batch_size=4, chunk_size=3, block_size=5, num_actors=1)
    prompt_model = engine.prompt_model(WordCountPromptModel())
    quality = prompt_model.quality(instructions, responses)
    distinct = len(set(zip(instructions[20:], responses[20:])) - set(zip(instructions[:20], responses[:20])))
    assert prompt_model.last_computed == distinct
    expected = local.quality(instructions, responses)
    np.testing.assert_array_equal(quality.scores, expected.scores)
    np.testing.assert_array_equal(quality.truncated, expected.truncated)
    complexity = engine.prompt_model(WordCountPromptModel()).complexity(instructions)
    np.testing.assert_array_equal(complexity.scores, local.complexity(instructions).scores)


# A JSONL file with every oddity the reader keeps: a byte-order mark, CRLF and LF endings,
# blank lines, unreadable records, ids present and absent, no newline after the last line.
ODD_JSONL = (
    "\ufeff" + '{"instruction": "Say hi", "output": "hi"}\r\n'
    "\r\n"
    '{"id": "x7", "instruction": "Count", "input": "1 2", "output": "3 words"}\r\n'
    "not json\n"
    "[1, 2]\n"
    '{"instruction": "Spell cat", "output": "c a t \\u00e9", "extra": {"nested": [1, 2]}}\n'
    "\n\n"
    '{"instruction": "Name a river", "output": "The Rh\u00f4ne, which is long"}\n'
    '{"instruction": "Last one", "output": "without a final newline"}'
)


@pytest.fixture()
def odd_jsonl(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_bytes(ODD_JSONL.encode("utf-8"))
    return path


def assert_same_dataset(distributed, local):
    assert [(r.id, r.turns, r.index) for r in distributed.records] == [(r.id, r.turns, r.index) for r in local.records]
    assert [r.original for r in distributed.records] == [r.original for r in local.records]
    assert distributed.spans == local.spans and distributed.skipped == local.skipped
    assert (distributed.format, distributed.field_map, distributed.layout) == (local.format, local.field_map, local.layout)
    assert distributed.input_count == local.input_count and distributed.container == local.container == "jsonl"


@pytest.mark.parametrize("block_bytes", [7, 60, 1 << 20])
def test_ray_reads_jsonl_in_blocks_into_the_local_dataset(local_ray, odd_jsonl, block_bytes):
    local = LocalEngine().read(odd_jsonl, on_error="skip")
    assert_same_dataset(RayEngine(read_block_bytes=block_bytes).read(odd_jsonl, on_error="skip"), local)


def test_ray_read_stops_at_the_first_bad_record_as_local_does(local_ray, odd_jsonl):
    with pytest.raises(DataError) as local:
        LocalEngine().read(odd_jsonl)
    with pytest.raises(DataError) as distributed:
        RayEngine(read_block_bytes=20).read(odd_jsonl)
    assert str(distributed.value) == str(local.value) and "line 4, record 2" in str(local.value)


def test_ray_reads_real_jsonl_into_the_local_dataset(local_ray, shared_data):
    source = shared_data / "oasst" / "oasst_en_100_tree.jsonl"
    assert_same_dataset(RayEngine(read_block_bytes=50_000).read(source), LocalEngine().read(source))


@pytest.mark.parametrize("part_size", [1, 2, 50_000])
def test_ray_writes_selections_byte_identical_to_local(local_ray, odd_jsonl, tmp_path, part_size):
    engine = RayEngine(read_block_bytes=30, write_part_size=part_size)
    data = engine.read(odd_jsonl, on_error="skip")
    scores = {"score": np.linspace(0.5, 2.0, len(data.records))}
    selections = {"all, reversed": list(range(len(data.records)))[::-1], "ending with the last line": [1, 0, 4], "none": []}
    for name, indices in selections.items():
        for with_scores in (None, scores):
            local = LocalEngine().write_selection(data, indices, tmp_path / "local.jsonl", with_scores, overwrite=True)
            written = engine.write_selection(data, indices, tmp_path / "ray.jsonl", with_scores, overwrite=True)
            assert written.read_bytes() == local.read_bytes(), name
            assert (tmp_path / "ray.jsonl.skipped.jsonl").read_bytes() == (tmp_path / "local.jsonl.skipped.jsonl").read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "local.jsonl", "local.jsonl.skipped.jsonl", "odd.jsonl", "ray.jsonl", "ray.jsonl.skipped.jsonl"
    ]


def test_ray_engine_refuses_an_input_changed_since_the_driver_read_it(local_ray, odd_jsonl, tmp_path):
    engine = RayEngine()
    data = engine.read(odd_jsonl, on_error="skip")
    odd_jsonl.write_bytes(ODD_JSONL.encode("utf-8") + b"\n")
    with pytest.raises(DataError, match="changed since it was read"):
        engine.write_selection(data, [0], tmp_path / "out.jsonl")


def run_cli(*args: str):
    result = CliRunner().invoke(app, ["--quiet", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_select_with_the_ray_engine_writes_what_the_local_engine_writes(local_ray, odd_jsonl, tmp_path):
    for engine in ("local", "ray"):
        run_cli("select", str(odd_jsonl), "-o", str(tmp_path / f"{engine}.jsonl"), "--keep", "50%", "--method", "longest",
                "--with-scores", "--on-error", "skip", "--no-cache", "--engine", engine)
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert len((tmp_path / "ray.jsonl").read_bytes().splitlines()) == 3


def test_score_with_the_ray_engine_gives_the_local_scores(local_ray, tmp_path, tiny_llama_dir):
    rows = [{"instruction": record.instruction, "output": record.turns[-1].text} for record in make_records(6)]
    source = tmp_path / "data.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    for engine in ("local", "ray"):
        run_cli("score", str(source), "-o", str(tmp_path / f"{engine}.scores.jsonl"), "--scorer", "deita",
                "--model", str(tiny_llama_dir), "--device", "cpu", "--no-cache", "--engine", engine)
    local, distributed = read_scores(tmp_path / "local.scores.jsonl"), read_scores(tmp_path / "ray.scores.jsonl")
    assert distributed.ids == local.ids
    for column in ("deita_complexity", "deita_quality", "deita"):
        np.testing.assert_allclose(distributed.columns[column], local.columns[column], rtol=0, atol=1e-5)


def test_score_refuses_the_ray_engine_with_the_vllm_backend(tmp_path, odd_jsonl):
    result = CliRunner().invoke(app, ["score", str(odd_jsonl), "-o", str(tmp_path / "s.jsonl"), "--engine", "ray",
                                      "--backend", "vllm"])
    assert result.exit_code != 0 and "vLLM" in str(result.exception)
