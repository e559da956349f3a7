"""`sftselect pairs`: preference pairs from ranked replies, or from several files answering the same instructions.

One input: an OpenAssistant tree file (each user message's ranked replies) or UltraFeedback
(each instruction's rated completions). Several inputs: their answers to the same prompt, joined
on the prompt's text, ordered by a given order of the inputs, by score files from `sftselect
score`, or by a registered scorer. The pairs are written in TRL's conversational preference
format (`sftselect.io.preferences.pair_row`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import chain, islice
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from sftselect.errors import DataError, OptionError
from sftselect.io.atomic import check_outputs
from sftselect.io.containers import RawItem, extension_of
from sftselect.io.dataset import DETECTION_SAMPLE, Dataset, RecordReader, Skipped, open_source, read_dataset
from sftselect.io.hub import RepositoryOptions
from sftselect.io.formats import RecordProblem, is_mapping
from sftselect.io.preferences import (
    PAIRINGS,
    Candidate,
    PairCounts,
    RankedGroup,
    pair_row,
    pair_up,
    split_reply,
    tree_groups,
    ultrafeedback_group,
)
from sftselect.io.write import data_outputs, dest_container, skipped_path, write_rows, write_skipped
from sftselect.progress import progress
from sftselect.records import Turn

PAIR_CONTAINERS = ("json", "jsonl", "json.gz", "jsonl.gz")
TREE_FORMATS = ("oasst_tree", "oasst_ranks")
# Score file columns that rate a response, best first; complexity rates the instruction, which all answers share.
RESPONSE_SCORE_COLUMNS = ("deita", "deita_quality")


@dataclass
class PairsReport:
    """What `make_pairs` did: prompts with two or more replies, pairs written, what pairing left out, records skipped."""

    dest: Path
    prompts: int = 0
    pairs: int = 0
    counts: PairCounts = field(default_factory=PairCounts)
    single_answers: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as a few plain lines."""
        counts = self.counts
        lines = [
            f"pairs: {self.pairs} from {self.prompts} prompts with two or more replies -> {self.dest}",
            f"not paired: {counts.ties} ties, {counts.identical} identical texts, {counts.below_gap} below the minimum gap",
        ]
        if self.single_answers:
            lines.append(f"prompts answered by one input only: {self.single_answers}")
        if self.skipped:
            lines.append(f"records skipped: {len(self.skipped)} (with their reasons in {skipped_path(self.dest)})")
        return lines


def input_name(source: str | Path) -> str:
    """An input's name in `--order` and in the rows' `chosen_source`: its file name without the container extension."""
    name = Path(source).name
    extension = extension_of(name)
    return name[: -len(extension)] if extension else name


def make_pairs(
    sources: Sequence[str | Path],
    dest: str | Path,
    *,
    order: str | None = None,
    score_files: Sequence[str | Path] | None = None,
    method: str | None = None,
    model: str | None = None,
    method_options: Mapping[str, Any] | None = None,
    min_gap: float = 0.0,
    pairing: str = "all",
    format: str | None = None,
    field_map: Mapping[str, str] | None = None,
    on_error: str = "raise",
    overwrite: bool = False,
    cache: Any = None,
    subset: str | None = None,
    split: str | None = None,
    revision: str | None = None,
    streaming: bool = False,
) -> PairsReport:
    """Write the preference pairs of `sources` to `dest` (JSON or JSONL by its extension); see the module doc.

    Exactly one of `order` (input names, best first), `score_files` (one per input, in input
    order) and `method` (a registered scorer, `model` and `method_options` its model and options)
    orders several inputs' answers; one input brings its own ranks. Pairs are those `pair_up`
    makes with `min_gap` and `pairing`. `subset`, `split`, `revision` and `streaming` choose
    what to read of Hub datasets and dataset repository folders, as for `read_dataset`.
    """
    repository = RepositoryOptions(subset, split, revision, streaming)
    sources = [str(source) for source in sources]
    dest = Path(dest)
    if not sources:
        raise OptionError("give at least one input")
    if dest_container(dest, "jsonl") not in PAIR_CONTAINERS:
        raise OptionError(f"{dest}: pairs are written as JSON or JSONL (.json, .jsonl, .json.gz, .jsonl.gz), the files TRL loads")
    if pairing not in PAIRINGS:
        raise OptionError(f"{{pairing}} must be one of {', '.join(PAIRINGS)}, not {pairing!r}", options=("pairing",))
    if min_gap < 0:
        raise OptionError(f"{{min_gap}} must be 0 or more, not {min_gap}", options=("min_gap",))
    ways = [name for name, given in (("order", order), ("scores", score_files), ("method", method)) if given]
    if len(sources) == 1 and ways:
        raise OptionError(
            f"{{{ways[0]}}} orders the answers of several inputs; one input is paired by its own ranks "
            "(an OpenAssistant tree, UltraFeedback ratings)", options=(ways[0],),
        )
    if len(sources) > 1 and len(ways) != 1:
        raise OptionError(
            f"say how the answers of the {len(sources)} inputs are ordered, in one way: {{order}} NAME,NAME,... (best first), "
            "{scores} FILE for each input, or {method} NAME", options=("order", "scores", "method"),
        )
    if score_files and len(score_files) != len(sources):
        raise OptionError(f"{{scores}} takes one score file per input, in input order: {len(score_files)} for {len(sources)} inputs",
                          options=("scores",))
    ranks = _order_scores(order, sources) if order else None
    check_outputs(data_outputs(dest, None, on_error), [*sources, *(score_files or [])], overwrite)
    report = PairsReport(dest)
    if len(sources) == 1:
        groups = list(_own_groups(sources[0], format, field_map, on_error, report.skipped, repository))
    else:
        datasets = []
        with progress("reading", total=len(sources), unit="files") as bar:
            for source in sources:
                datasets.append(read_dataset(source, format, field_map, on_error, subset=subset, split=split, revision=revision, streaming=streaming))
                bar.advance(1)
        for data in datasets:
            report.skipped.extend(replace(item, file=data.name) for item in data.skipped)
        scores = _input_scores(datasets, ranks, score_files, method, model, method_options, cache)
        groups, report.single_answers = _joined_groups(datasets, [input_name(source) for source in sources], scores)
    groups = [group for group in groups if len(group.candidates) > 1]
    report.prompts = len(groups)
    rows = [pair_row(group, chosen, rejected) for group in groups for chosen, rejected in pair_up(group, min_gap, pairing, report.counts)]
    report.pairs = write_rows(rows, dest, dest_container(dest, "jsonl"))
    if report.skipped:
        write_skipped(report.skipped, skipped_path(dest))
    return report


def _own_groups(source: str, format: str | None, field_map: Mapping[str, str] | None, on_error: str,
                skipped: list[Skipped], repository: RepositoryOptions) -> Iterator[RankedGroup]:
    """The ranked groups one input holds: every OpenAssistant tree's ranked replies, or UltraFeedback's rated completions."""
    opened = open_source(source, repository=repository)
    reader = RecordReader(opened.name, format, field_map, on_error)
    items = iter(opened.items)
    sample = list(islice(items, DETECTION_SAMPLE))
    reader.decide(sample)
    name = reader.format.name
    if name not in (*TREE_FORMATS, "ultrafeedback"):
        raise OptionError(
            f"{opened.name} is in format {name}, which ranks no replies; one input is paired by its own ranks "
            "(an OpenAssistant tree file, UltraFeedback), several by --order, --scores or --method"
        )
    with progress("reading", total=None, unit="records") as bar:
        for item in chain(sample, items):
            bar.advance(1)
            found = _groups_of(item, reader)
            if found is not None:
                yield from found
    skipped.extend(reader.skipped)


def _groups_of(item: RawItem, reader: RecordReader) -> list[RankedGroup] | None:
    """The ranked groups of one raw record of the reader's format; None when it was rejected (raises under on_error="raise")."""
    name = reader.format.name
    if item.error is not None:
        reader.reject(item, item.error)
        return None
    if not is_mapping(item.value) or not reader.format.holds(item.value, reader.fields):
        needed = ", ".join(repr(reader.fields[canonical]) for canonical in reader.format.required)
        reader.reject(item, f"record is not in the file's format, {name} (it needs {needed})")
        return None
    try:
        if name == "ultrafeedback":
            own_id = reader.format.id_of(item.value)
            return [ultrafeedback_group(item.value, reader.fields, str(own_id if own_id is not None else item.number))]
        return list(tree_groups(item.value, reader.fields))
    except RecordProblem as problem:
        reader.reject(item, str(problem))
        return None


def _order_scores(order: str, sources: Sequence[str]) -> list[float]:
    """Each input's score from `--order` (best first): the first named scores highest, one apart."""
    names = [name.strip() for name in order.split(",") if name.strip()]

    def matches(name: str, source: str) -> bool:
        return name in (source, Path(source).name, input_name(source), input_name(source).split(".")[0])

    positions: dict[int, int] = {}
    for position, name in enumerate(names):
        found = [number for number, source in enumerate(sources) if matches(name, source)]
        if len(found) != 1:
            problem = "names no input" if not found else f"names {len(found)} inputs"
            raise OptionError(f"{{order}} {name!r} {problem}; name each input once by its path, file name or name before the first dot",
                              options=("order",))
        if found[0] in positions:
            raise OptionError(f"{{order}} names {sources[found[0]]} twice", options=("order",))
        positions[found[0]] = position
    missing = [source for number, source in enumerate(sources) if number not in positions]
    if missing:
        raise OptionError(f"{{order}} must name every input; it leaves out {missing[0]}", options=("order",))
    return [float(len(sources) - positions[number]) for number in range(len(sources))]


def _input_scores(
    datasets: Sequence[Dataset], ranks: list[float] | None, score_files: Sequence[str | Path] | None, method: str | None,
    model: str | None, method_options: Mapping[str, Any] | None, cache: Any,
) -> list[np.ndarray]:
    """One score per record of each input: its input's place in the order, its score file's, or the scorer's."""
    if ranks is not None:
        return [np.full(len(data.records), rank) for data, rank in zip(datasets, ranks)]
    if score_files:
        return [_file_scores(path, data) for path, data in zip(score_files, datasets)]
    from sftselect.engine.local import LocalEngine
    from sftselect.scorers.registry import SCORERS

    scorer = SCORERS.create(method, model, **SCORERS.accepted(method, dict(method_options or {})))
    engine = LocalEngine(cache)
    return [engine.score(data.records, scorer) for data in datasets]


def _file_scores(path: str | Path, data: Dataset) -> np.ndarray:
    """A response score for each record of `data`, by id, from a file written by `sftselect score`."""
    from sftselect.io.results import read_scores

    table = read_scores(path)
    column = next((name for name in RESPONSE_SCORE_COLUMNS if name in table.columns), None)
    if column is None:
        raise DataError(str(path), "holds no response scores (deita or deita_quality): complexity rates the instruction, "
                        "which every answer shares; score the answers with --scorer deita-quality or deita")
    by_id = dict(zip(table.ids, table.columns[column].tolist()))
    missing = next((record.id for record in data.records if record.id not in by_id), None)
    if missing is not None:
        raise DataError(str(path), f"has no score for record {missing!r} of {data.name}")
    return np.asarray([by_id[record.id] for record in data.records], dtype=np.float64)


def _joined_groups(datasets: Sequence[Dataset], names: Sequence[str], scores: Sequence[np.ndarray]) -> tuple[list[RankedGroup], int]:
    """The inputs' answers joined on their prompts (every turn up to the last user turn), and how many prompts only one input answered."""
    groups: dict[tuple[Turn, ...], tuple[str, list[Candidate]]] = {}
    for data, name, values in zip(datasets, names, scores):
        first_of: dict[tuple[Turn, ...], int] = {}
        for record, score in zip(data.records, values.tolist()):
            prompt, reply = split_reply(record)
            if prompt in first_of:
                raise DataError(data.name, f"repeats the prompt of record {first_of[prompt]}; pairs join the inputs on their "
                                "prompts, so each prompt may appear once in each input", record=record.index)
            first_of[prompt] = record.index
            group_id, candidates = groups.setdefault(prompt, (record.id, []))
            candidates.append(Candidate(reply, float(score), name))
    joined = [RankedGroup(group_id, prompt, tuple(candidates)) for prompt, (group_id, candidates) in groups.items()]
    return joined, sum(len(group.candidates) == 1 for group in joined)
