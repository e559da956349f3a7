"""`sftselect pairs`: make preference pairs from ranked replies or from several files answering the same instructions."""

from __future__ import annotations

from typing import List, Optional

import typer

from sftselect.cli.options import (
    CachePathOption,
    FieldOption,
    FormatOption,
    NoCacheOption,
    OnErrorOption,
    OverwriteOption,
    RevisionOption,
    SplitOption,
    StreamingOption,
    SubsetOption,
    naming_flags,
    read_arguments,
)
from sftselect.cli.output import console

PAIRS_FLAGS = {"order": "--order", "scores": "--scores", "method": "--method", "pairing": "--pairing", "min_gap": "--min-gap"}


@naming_flags(PAIRS_FLAGS)
def pairs_command(
    sources: List[str] = typer.Argument(
        ..., metavar="IN...",
        help="One OpenAssistant tree file or UltraFeedback file (paired by their own ranks or ratings), or several files "
        "answering the same instructions (joined on the prompt text: every turn up to the last user turn).",
    ),
    output: str = typer.Option(
        ..., "--output", "-o", metavar="OUT",
        help="Where to write the pairs in TRL's conversational preference format (prompt, chosen, rejected as message lists, "
        "plus prompt_id, chosen_score, rejected_score, chosen_source, rejected_source): .jsonl, or a JSON list for .json.",
    ),
    order: Optional[str] = typer.Option(
        None, "--order", metavar="A,B,C",
        help="Several inputs: their order, best first, each named by its path, file name, or file name before the first dot "
        "(gpt4 for gpt4.model_outputs.json).",
    ),
    score_files: Optional[List[str]] = typer.Option(
        None, "--scores", metavar="FILE",
        help="Several inputs: one score file of `sftselect score --scorer deita-quality` (or deita) per input, in input "
        "order; an answer's score orders it. Repeatable.",
    ),
    method: Optional[str] = typer.Option(
        None, "--method",
        help="Several inputs: score every answer (with its prompt) with this registered method (scar, deita-quality, ...) "
        "and order the answers by it.",
    ),
    model: Optional[str] = typer.Option(
        None, "--model", metavar="NAME_OR_PATH",
        help="The --method's model (default: the method's own); with --method alpagasus, the judging LLM.",
    ),
    base_url: Optional[str] = typer.Option(
        None, "--base-url", help="With --method alpagasus (an LLM judge rating each answer 0-5): its OpenAI-compatible "
        "endpoint, e.g. http://127.0.0.1:8000/v1 (default: OpenAI; key in OPENAI_API_KEY).",
    ),
    min_gap: float = typer.Option(
        0.0, "--min-gap",
        help="Pair two replies only when the better scores at least this much more (OpenAssistant: ranks apart, since a "
        "reply scores minus its rank; --order: places apart). Equal scores are never paired.",
    ),
    pairing: str = typer.Option(
        "all", "--pairing",
        help="all: each reply with every reply it beats by --min-gap; adjacent: each reply only with the best of those.",
    ),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="With --method: records per model batch (default: the method's own)."),
    device: Optional[str] = typer.Option(None, "--device", help="With --method: cpu, cuda or cuda:N (default: a GPU when there is one)."),
    no_cache: NoCacheOption = False,
    cache_path: CachePathOption = None,
    format: FormatOption = None,
    fields: FieldOption = None,
    subset: SubsetOption = None,
    split: SplitOption = None,
    revision: RevisionOption = None,
    streaming: StreamingOption = False,
    on_error: OnErrorOption = "raise",
    overwrite: OverwriteOption = False,
) -> None:
    """Make preference pairs (TRL's prompt/chosen/rejected) from ranked or scored replies; ties and identical texts are never paired."""
    from sftselect.engine.cache import open_cache
    from sftselect.pairs import make_pairs
    from sftselect.progress import is_quiet

    options = {"device": device, "base_url": base_url, **({"batch_size": batch_size} if batch_size is not None else {})}
    report = make_pairs(
        sources, output, order=order, score_files=score_files, method=method, model=model, method_options=options,
        min_gap=min_gap, pairing=pairing, overwrite=overwrite, cache=open_cache(no_cache, cache_path) if method else None,
        **read_arguments(format, fields, on_error, subset, split, revision, streaming),
    )
    if not is_quiet():
        for line in report.lines():
            console.print(line, highlight=False)
