"""Options and help texts several commands share: input format, field map, Hub datasets, bad-record policy, writing, cache, engine."""

from __future__ import annotations

import functools
from typing import Any, Callable, List, Optional

import typer
from typing_extensions import Annotated

from sftselect.errors import OptionError

FORMAT_NAMES = (
    "alpaca", "sharegpt", "messages", "prompt_completion", "query_response",
    "oasst_tree", "humaneval", "questions", "reference_answers", "instructions",
    "preference", "hh_rlhf", "ultrafeedback", "oasst_ranks",
)

FormatOption = Annotated[
    Optional[str],
    typer.Option(
        "--format",
        help=f"Input format: auto (the default) or one of {', '.join(FORMAT_NAMES)}. With auto, the file's format is "
        "the one most of its first records fit, and a record in another format is read in its own.",
        show_default=False,
    ),
]
FieldOption = Annotated[
    Optional[List[str]],
    typer.Option(
        "--field",
        metavar="CANONICAL=KEY",
        help="Read a format's field from another key, e.g. --field instruction=question --field output=answer. Repeatable.",
        show_default=False,
    ),
]
OnErrorOption = Annotated[
    str,
    typer.Option(
        "--on-error",
        help="What to do with a bad record: 'raise' stops before writing anything; 'skip' leaves it out, "
        "writes it with its reason to OUT.skipped.jsonl and reports how many.",
    ),
]
OverwriteOption = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace an existing output, only when it is an earlier output of the same kind (a file, or a folder "
        "holding nothing but what sftselect writes there). An input is never replaced.",
    ),
]
SubsetOption = Annotated[
    Optional[str],
    typer.Option(
        "--subset",
        help="For a Hub dataset id (owner/name) or a dataset repository folder: the subset (configuration) to read, "
        "where it has several.",
        show_default=False,
    ),
]
SplitOption = Annotated[
    Optional[str],
    typer.Option(
        "--split",
        help="For a Hub dataset id or a dataset repository folder: the split to read (default: train); also picks a "
        "split of a save_to_disk DatasetDict folder.",
        show_default=False,
    ),
]
RevisionOption = Annotated[
    Optional[str],
    typer.Option("--revision", help="For a Hub dataset id: the branch, tag or commit to read (default: main).", show_default=False),
]
StreamingOption = Annotated[
    bool,
    typer.Option(
        "--streaming",
        help="For a Hub dataset id or a dataset repository folder: read the rows as they come instead of preparing "
        "the whole split in the datasets cache first (for datasets too large for the disk). Records are numbered "
        "in the same order.",
    ),
]
WithScoresOption = Annotated[
    bool,
    typer.Option("--with-scores", help="Add each record's scores as extra fields (by default records are written exactly as read)."),
]

CACHE_PATH_HELP = "The cache file (default: <user cache folder>/sftselect/scores.sqlite; SFTSELECT_CACHE_DIR moves the folder)."
ENGINE_HELP = (
    "Where reading, models and writing run: local (this process) or ray (a Ray cluster through Ray Data; "
    "pip install 'sftselect\\[ray]'). With ray, plain JSONL is read and written in blocks by Ray tasks."
)
RAY_ADDRESS_HELP = "With --engine ray: the address of an existing Ray cluster (e.g. ray://head:10001); default: start a local one."
NoCacheOption = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the score cache.")]
CachePathOption = Annotated[Optional[str], typer.Option("--cache-path", help=CACHE_PATH_HELP)]
EngineOption = Annotated[str, typer.Option("--engine", help=ENGINE_HELP)]
RayAddressOption = Annotated[Optional[str], typer.Option("--ray-address", help=RAY_ADDRESS_HELP)]
UNSAFE_NO_SANDBOX_HELP = (
    "Where bubblewrap is missing or cannot create namespaces, run generated code anyway, outside any sandbox "
    "(only time and memory limits): UNSAFE, the code can do whatever you can."
)


def read_arguments(
    format: Optional[str], fields: Optional[List[str]], on_error: str,
    subset: Optional[str] = None, split: Optional[str] = None, revision: Optional[str] = None, streaming: bool = False,
) -> dict[str, Any]:
    """The keyword arguments of `read_dataset` / `iter_record_batches` for these options."""
    from sftselect.io.formats import parse_field_map

    return {
        "format": format, "field_map": parse_field_map(fields), "on_error": on_error,
        "subset": subset, "split": split, "revision": revision, "streaming": streaming,
    }


def naming_flags(flags: dict[str, str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: a library OptionError raised by the command names the command's flags, not the parameters."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except OptionError as error:
                if not error.options:
                    raise
                raise OptionError(error.naming(flags)) from error

        return run

    return decorate
EstimateOption = Annotated[
    bool,
    typer.Option(
        "--estimate",
        help="Do no work: read the input, time each model step on a small sample on the chosen device, count what the "
        "cache holds, print the estimated time and peak memory per step and in all, and exit. Writes nothing.",
    ),
]
