"""`sftselect inspect` and `sftselect convert`: look at a dataset, convert it to another format."""

from __future__ import annotations

import typer
from rich.console import Console

from sftselect.cli.options import (
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

CONVERT_HELP = (
    "Convert a dataset to ShareGPT, Alpaca or OpenAI messages (JSON and JSONL outputs are written as records "
    "stream). Each record keeps its conversation (system prompt and turns), its id where the target has a place for "
    "it (sharegpt, alpaca; messages has none) and, Alpaca to Alpaca, its input apart from its instruction. Every other "
    "key is dropped (alpaca_eval's generator and dataset, for example), and an OpenAssistant tree becomes its "
    "best-ranked path."
)


def inspect_command(
    source: str = typer.Argument(
        ..., metavar="FILE", help="A JSON/JSONL(.gz)/CSV/Parquet file, a save_to_disk or dataset folder, or a Hub dataset id (owner/name)."
    ),
    format: FormatOption = None,
    fields: FieldOption = None,
    subset: SubsetOption = None,
    split: SplitOption = None,
    revision: RevisionOption = None,
    streaming: StreamingOption = False,
    on_error: OnErrorOption = "raise",
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
) -> None:
    """Show the format found, record count, turns per record, length statistics and problems (streams large files)."""
    import dataclasses
    import json

    from rich.table import Table

    from sftselect.io.inspect import inspect_source

    report = inspect_source(source, **read_arguments(format, fields, on_error, subset, split, revision, streaming))
    if as_json:
        print(json.dumps(dataclasses.asdict(report), indent=2))
        return
    out = Console()
    out.print(f"[bold]{report.source}[/]", highlight=False)
    out.print(f"{report.records} records, format [cyan]{report.format}[/], container [cyan]{report.container}[/]", highlight=False)
    out.print(f"[dim]{report.format_description}[/]", highlight=False)
    turns = Table(title="turns per record")
    turns.add_column("turns", justify="right")
    turns.add_column("records", justify="right")
    for count, records in report.turns_per_record.items():
        turns.add_row(str(count), str(records))
    out.print(turns)
    lengths = Table(title="length in characters")
    for column in ("", "mean", "min", "median", "p95", "max"):
        lengths.add_column(column, justify="right")
    rows = [("instruction", report.instruction_chars), ("response", report.response_chars)]
    if report.preferences is not None:
        out.print(f"{report.preferences.pairs} preference pairs (prompt, chosen, rejected)", highlight=False)
        pairs = report.preferences
        rows = [("prompt", pairs.prompt_chars), ("chosen", pairs.chosen_chars), ("rejected", pairs.rejected_chars)]
    for label, stats in rows:
        lengths.add_row(label, f"{stats.mean:.0f}", str(stats.minimum), f"{stats.median:.0f}", f"{stats.p95:.0f}", str(stats.maximum))
    out.print(lengths)
    if report.problems:
        out.print("[bold yellow]problems:[/]")
        for problem in report.problems:
            out.print(f"  - {problem}", highlight=False)
    else:
        out.print("[green]no problems found[/]")


def convert_command(
    source: str = typer.Argument(..., metavar="IN", help="Input file, save_to_disk or dataset folder, or Hub dataset id (owner/name), any supported format."),
    dest: str = typer.Argument(..., metavar="OUT", help="Output; its extension picks the container (.json, .jsonl, .jsonl.gz, .parquet, .csv)."),
    to: str = typer.Option(..., "--to", help="Target format, with the standard keys TRL and LLaMA-Factory read: sharegpt, alpaca or messages."),
    format: FormatOption = None,
    fields: FieldOption = None,
    subset: SubsetOption = None,
    split: SplitOption = None,
    revision: RevisionOption = None,
    streaming: StreamingOption = False,
    on_error: OnErrorOption = "raise",
    overwrite: OverwriteOption = False,
    llamafactory_info: str | None = typer.Option(
        None, "--llamafactory-info", metavar="FILE",
        help="Also add OUT's entry (named for OUT without its extension) to LLaMA-Factory's dataset_info.json FILE, "
        "keeping its other entries; an entry of that name for another file is replaced only with --overwrite.",
    ),
) -> None:
    from sftselect.progress import is_quiet
    from sftselect.io.convert import convert_source

    written, skipped, side = convert_source(
        source, to, dest, overwrite=overwrite, llamafactory_info=llamafactory_info,
        **read_arguments(format, fields, on_error, subset, split, revision, streaming),
    )
    if is_quiet():
        return
    console.print(f"wrote {written} records as {to} to {dest}", highlight=False)
    if llamafactory_info is not None:
        from sftselect.io.llamafactory import entry_name

        console.print(f"added the entry {entry_name(dest)!r} to {llamafactory_info}", highlight=False)
    if skipped:
        console.print(f"[yellow]skipped {len(skipped)} records[/]; they and the reasons are in {side}", highlight=False)
