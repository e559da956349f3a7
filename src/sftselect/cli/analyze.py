"""`sftselect analyze`: compare style metrics of a pool and its selections or groups."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.console import Console

from sftselect.cli.options import (
    CachePathOption,
    EstimateOption,
    FieldOption,
    FormatOption,
    OnErrorOption,
    OverwriteOption,
    RevisionOption,
    SplitOption,
    StreamingOption,
    SubsetOption,
    read_arguments,
)
from sftselect.cli.output import console


def analyze_command(
    source: str = typer.Argument(..., metavar="IN", help="The pool: input file, save_to_disk or dataset folder, or Hub dataset id (owner/name), any supported format."),
    selected: Optional[List[str]] = typer.Option(
        None, "--selected", metavar="OUT", help="A selection to compare with the pool (e.g. the output of `select`). Repeatable."
    ),
    group_by: Optional[str] = typer.Option(
        None, "--group-by", metavar="FIELD",
        help="Also compare groups of pool records by a field of the records as read (dots for nested keys), e.g. generator.",
    ),
    json_out: Optional[str] = typer.Option(None, "--json", metavar="FILE", help="Write means, standard deviations and counts as JSON."),
    html_out: Optional[str] = typer.Option(
        None, "--html", metavar="FILE", help="Write a self-contained HTML report with a distribution plot per metric."
    ),
    no_lm: bool = typer.Option(False, "--no-lm", help="Leave out the LM metrics (perplexity, instructional surprisal, IFD); text metrics only."),
    lm: Optional[str] = typer.Option(
        None, "--lm", metavar="NAME_OR_PATH",
        help="Causal LM for token length and the LM metrics: a folder or hub id (default: the packaged SmolLM2-135M-Instruct).",
    ),
    max_response_tokens: int = typer.Option(512, "--max-response-tokens", help="LM metrics read at most this many tokens of each response."),
    batch_tokens: int = typer.Option(4096, "--batch-tokens", help="Padded tokens per LM batch (lower it if memory runs short)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: a GPU when there is one)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the cache of LM losses."),
    cache_path: CachePathOption = None,
    format: FormatOption = None,
    fields: FieldOption = None,
    subset: SubsetOption = None,
    split: SplitOption = None,
    revision: RevisionOption = None,
    streaming: StreamingOption = False,
    on_error: OnErrorOption = "raise",
    overwrite: OverwriteOption = False,
    estimate: EstimateOption = False,
) -> None:
    """Compare style metrics (length, lexical diversity, layout, LM perplexity...) of a pool and its selections or groups."""
    from pathlib import Path

    from sftselect.analysis.analyze import analyze_files
    from sftselect.models.response_losses import ResponseLosses
    from sftselect.analysis.report import summary_table, write_html, write_json
    from sftselect.engine.cache import open_cache
    from sftselect.io.atomic import check_outputs
    from sftselect.io.write import skipped_path

    if estimate:
        losses = None if no_lm else ResponseLosses(lm, max_response_tokens=max_response_tokens, batch_tokens=batch_tokens, device=device)
        cache = None if no_lm else open_cache(no_cache, cache_path)
        _estimate(source, selected or [], losses, cache, read_arguments(format, fields, on_error, subset, split, revision, streaming), device)
        return
    report = json_out or html_out
    side_file = skipped_path(Path(report)) if report and on_error == "skip" else None
    check_outputs([json_out, html_out, side_file], [source, *(selected or [])], overwrite)
    losses = ResponseLosses(lm, max_response_tokens=max_response_tokens, batch_tokens=batch_tokens, device=device)
    analysis = analyze_files(
        source, selected or [], read_options=read_arguments(format, fields, on_error, subset, split, revision, streaming), group_by=group_by, lm=losses,
        use_lm=not no_lm, cache=None if no_lm else open_cache(no_cache, cache_path),
    )
    Console().print(summary_table(analysis))
    if json_out:
        console.print(f"wrote {write_json(analysis, json_out, overwrite=overwrite)}", highlight=False)
    if html_out:
        console.print(f"wrote {write_html(analysis, html_out, overwrite=overwrite)}", highlight=False)
    if analysis.skipped:
        _report_skipped(analysis.skipped, report)


def _report_skipped(skipped: list, report: Optional[str]) -> None:
    """Write the records analyze left out beside its report, as select does beside its output, and say how many."""
    from pathlib import Path

    from sftselect.analysis.analyze import skipped_notes
    from sftselect.progress import is_quiet
    from sftselect.io.write import skipped_path, write_skipped

    side = write_skipped(skipped, skipped_path(Path(report))) if report else None
    if is_quiet():
        return
    for note in skipped_notes(skipped):
        console.print(f"[yellow]skipped:[/] {note}", highlight=False, soft_wrap=True)
    if side:
        console.print(f"they and the reasons are in {side}", highlight=False, soft_wrap=True)


def _estimate(
    source: str, selected: List[str], losses: object, cache: object, read_options: dict, device: Optional[str]
) -> None:
    """Print what `analyze` would take with the LM `losses` (None under --no-lm), having read the files."""
    import time

    from sftselect.cli.output import print_estimate
    from sftselect.estimate import add_setup, estimate_analysis, measured_step, read_timed
    from sftselect.io import read_dataset

    pool, reading = read_timed(lambda: read_dataset(source, **read_options))
    selections = [read_dataset(path, **read_options).records for path in selected]
    setup = [reading]
    if losses is not None:
        started = time.perf_counter()
        losses.model  # loaded here, so that loading is a row of its own
        setup.append(measured_step("loading models", 0, time.perf_counter() - started))
    print_estimate(add_setup(estimate_analysis(pool.records, selections, losses, cache=cache, device=device), setup))
