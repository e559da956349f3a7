"""Several selection methods on one pool: one selection file per method and the style analysis of all."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from sftselect.analysis.analyze import Analysis, analyze
from sftselect.models.response_losses import ResponseLosses
from sftselect.analysis.report import write_html, write_json
from sftselect.errors import OptionError
from sftselect.io.atomic import Output, check_outputs


@dataclass
class Comparison:
    """The selections (positions into the pool, best first) by method, where they were written, and the analysis."""

    selections: dict[str, Any]
    written: dict[str, Path]
    analysis: Analysis
    json_path: Path
    html_path: Path


def parse_methods(text: str) -> list[str]:
    """Read `--compare scar,deita,random`: method names, comma-separated, each once."""
    from sftselect.scorers.registry import method_names

    methods = [name.strip() for name in text.split(",") if name.strip()]
    if not methods:
        raise OptionError("{compare} needs at least one method, e.g. scar,random,longest", options=("compare",))
    unknown = [name for name in methods if name not in method_names()]
    if unknown:
        raise OptionError(
            f"{{compare}}: unknown method {', '.join(unknown)}; choose from {', '.join(method_names())}", options=("compare",)
        )
    if len(set(methods)) != len(methods):
        raise OptionError(f"{{compare}} names a method twice: {text}", options=("compare",))
    return methods


def selection_name(method: str, source: str | Path) -> str:
    """The file name of a method's selection: the method with the input's extension (.jsonl for a folder or in-memory input)."""
    source = Path(source)
    if not source.is_file():
        return method + ".jsonl"
    suffixes = [suffix for suffix in source.suffixes[-2:] if suffix in (".json", ".jsonl", ".gz", ".parquet", ".csv")]
    return method + "".join(suffixes)


def comparison_outputs(methods: Sequence[str], out_dir: str | Path, source: str | Path, on_error: str = "raise") -> list[Output]:
    """Everything `compare_methods` writes into out_dir (or out_dir itself, when it is still to be made), to check first."""
    from sftselect.io.write import data_outputs

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OptionError(f"{out}: with --compare, -o names a folder for one selection per method")
    if not out.exists():
        return [Output(out)]
    selections = [output for method in methods for output in data_outputs(out / selection_name(method, source), source, on_error)]
    return [*selections, Output(out / "analysis.json"), Output(out / "analysis.html")]


def compare_methods(
    data: Any,
    methods: Sequence[str],
    out_dir: str | Path,
    *,
    keep: str | float | None = None,
    top: int | None = None,
    min_score: float | None = None,
    models: Mapping[str, str | None] | None = None,
    model_options: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    cache: Any = None,
    lm: ResponseLosses | None = None,
    use_lm: bool = True,
    overwrite: bool = False,
) -> Comparison:
    """Select from `data` (a read Dataset) with each method, write each selection and analyse them all.

    `models` gives a method its model (the ranker of scar, the LM of the LM baselines);
    `model_options` go to every method's factory (each takes the ones it knows). Each
    method selects with its preset (deita: with its diversity filter). Writes
    `<method><ext>` per method, `analysis.json` and `analysis.html` into `out_dir`.
    """
    from sftselect.io import write_selection
    from sftselect.pipeline import build_pipeline, run_selection

    out = Path(out_dir)
    check_outputs(comparison_outputs(methods, out, data.path or ""), [data.path], overwrite)
    out.mkdir(exist_ok=True)
    models = models or {}
    selections: dict[str, Any] = {}
    written: dict[str, Path] = {}
    for method in methods:
        pipeline = build_pipeline(
            method, keep=keep, top=top, min_score=min_score, model=models.get(method),
            # The LM baselines keep their losses in the cache, so ifd, perplexity and the analysis share one LM pass.
            shared_options={**(model_options or {}), "cache": cache}, batch_size=batch_size, device=device,
        )
        selection = run_selection(data.records, pipeline, cache=cache)
        dest = out / selection_name(method, data.path if data.path is not None else "")
        write_selection(data, selection.indices, dest, overwrite=overwrite)
        selections[method] = selection
        written[method] = dest
    chosen = {method: [data.records[i] for i in selection.indices] for method, selection in selections.items()}
    analysis = analyze(data.records, chosen, lm=lm, use_lm=use_lm, cache=cache, pool_name=data.name)
    json_path = write_json(analysis, out / "analysis.json", overwrite=overwrite)
    html_path = write_html(analysis, out / "analysis.html", title="sftselect: selections by method", overwrite=overwrite)
    return Comparison(selections, written, analysis, json_path, html_path)
