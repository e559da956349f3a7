"""Experiments: for each method and budget, select -> fine-tune (-> DPO) -> evaluate, then one table and plot.

Every step writes its output atomically and records the hash of everything that determines
it in OUTPUT_DIR/steps.json; a rerun skips each step whose output exists with the same hash,
so an interrupted experiment resumes where it stopped and a changed setting reruns only the
steps it affects.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sftselect._version import __version__
from sftselect.errors import OptionError
from sftselect.evaluation.evaluate import HumanEvalSettings, JudgeSettings, evaluate_model
from sftselect.io.atomic import FolderKind, atomic_path
from sftselect.io.recipes import RecipeSchema

PACKAGED_MODELS = {"packaged:smollm2": "smollm2_path"}
FINETUNE_KEYS = {
    "lora_r", "lora_alpha", "lora_dropout", "target_modules", "learning_rate", "lr_scheduler", "warmup_ratio",
    "epochs", "max_length", "batch_size", "gradient_accumulation_steps", "max_steps", "gradient_checkpointing",
    "seed", "chat_template",
}
# The keys of select's recipes that an experiment's `select:` section takes, applied to every arm; it sets the
# others itself (input: data, method: methods, keep/top: fractions/sizes, the outputs: output_dir).
SELECT_KEYS = (
    "format", "field", "on_error", "dedup", "near_dedup", "near_dedup_threshold", "english_only", "diversity", "embedder",
    "batch_size", "device", "turn_aggregate", "lm", "seed", "perplexity_keep", "max_response_tokens", "judge_model",
    "base_url", "complexity_model", "quality_model",
)
# Of those, the parameters that reach a method's scorer where it takes them (as select's flags do).
SCORER_SHARED = (
    "turn_aggregate", "lm", "seed", "perplexity_keep", "max_response_tokens", "judge_model", "base_url", "complexity_model", "quality_model",
)
DPO_KEYS = FINETUNE_KEYS | {"beta", "loss_type"}


@dataclass(frozen=True)
class MethodSpec:
    """One selection method: a label, a registered scorer or baseline, its model and options."""

    name: str
    method: str
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentConfig:
    """An experiment as read from its YAML file."""

    data: str
    model: str
    output_dir: Path
    methods: tuple[MethodSpec, ...]
    budgets: tuple[float | int, ...]
    finetune: dict[str, Any]
    humaneval: dict[str, Any] | None
    judge: dict[str, Any] | None
    evaluate_base: bool = True
    data_format: str | None = None
    selection: dict[str, Any] = field(default_factory=dict)  # the select section, by select's parameter names
    preferences: str | None = None  # preference pairs: with them, each SFT run also gets an sft+dpo arm
    dpo: dict[str, Any] = field(default_factory=dict)
    unsafe_no_sandbox: bool = False  # from the command line only: HumanEval may run generated code unsandboxed


def load_config(path: str | os.PathLike, select_schema: RecipeSchema | None = None) -> ExperimentConfig:
    """Read and check an experiment config; relative paths in it are relative to the config file.

    Its `select:` section takes keys of select's recipes (`select_schema`, which `sftselect experiment` passes).
    """
    import yaml

    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
    except OSError as error:
        raise OptionError(f"cannot read the experiment config {source}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise OptionError(f"{source}: not valid YAML ({error})") from error
    if not isinstance(raw, dict):
        raise OptionError(f"{source}: the config must be a mapping of settings")
    known = {
        "data", "format", "model", "output_dir", "methods", "fractions", "sizes", "finetune", "eval", "evaluate_base",
        "select", "preferences", "dpo",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise OptionError(f"{source}: unknown setting(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
    for required in ("data", "model", "methods"):
        if required not in raw:
            raise OptionError(f"{source}: the setting {required!r} is required")
    here = source.resolve().parent

    def local(value: str) -> str:
        return value if value.startswith("packaged:") or os.path.isabs(value) or not (here / value).exists() else str(here / value)

    methods = tuple(_method(source, entry) for entry in raw["methods"])
    if len({spec.name for spec in methods}) != len(methods):
        raise OptionError(f"{source}: method names must be distinct")
    budgets = tuple(float(f) for f in raw.get("fractions") or ()) + tuple(int(s) for s in raw.get("sizes") or ())
    if not budgets:
        raise OptionError(f"{source}: give the budgets as fractions (e.g. [0.05, 0.1]) or sizes (e.g. [200])")
    for budget in budgets:
        if (isinstance(budget, float) and not 0 < budget <= 1) or (isinstance(budget, int) and budget < 1):
            raise OptionError(f"{source}: a fraction must be in (0, 1] and a size at least 1, got {budget}")
    finetune = dict(raw.get("finetune") or {})
    unknown = sorted(set(finetune) - FINETUNE_KEYS)
    if unknown:
        raise OptionError(f"{source}: unknown finetune setting(s) {', '.join(unknown)}")
    dpo = dict(raw.get("dpo") or {})
    unknown = sorted(set(dpo) - DPO_KEYS)
    if unknown:
        raise OptionError(f"{source}: unknown dpo setting(s) {', '.join(unknown)}")
    if dpo and not raw.get("preferences"):
        raise OptionError(f"{source}: dpo settings need 'preferences', the preference pairs to train the sft+dpo arm on")
    evaluation = dict(raw.get("eval") or {"humaneval": {}})
    if not set(evaluation) <= {"humaneval", "judge"} or not evaluation:
        raise OptionError(f"{source}: eval takes humaneval and/or judge")
    judge = evaluation.get("judge")
    if judge is not None:
        for required in ("questions", "base_url"):
            if required not in judge:
                raise OptionError(f"{source}: eval.judge needs {required!r}")
        judge = {**judge, "questions": local(judge["questions"])}
        if judge.get("reference"):
            judge["reference"] = local(judge["reference"])
    for name, settings in (("humaneval", HumanEvalSettings), ("judge", JudgeSettings)):
        # unsafe_no_sandbox comes from the command line, never from a config file.
        allowed = {setting.name for setting in fields(settings)} - {"unsafe_no_sandbox"}
        unknown = sorted(set(evaluation.get(name) or {}) - allowed)
        if unknown:
            raise OptionError(f"{source}: unknown eval.{name} setting(s) {', '.join(unknown)}")
    selection = _selection(source, text, select_schema) if "select" in raw else {}
    for name in ("lm", "complexity_model", "quality_model", "embedder"):
        if isinstance(selection.get(name), str):
            selection[name] = local(selection[name])
    if "format" in raw and "format" in selection:
        raise OptionError(f"{source}: give the format once, at the top or in the select section")
    output_dir = Path(raw.get("output_dir") or source.with_suffix(""))
    return ExperimentConfig(
        data=local(str(raw["data"])),
        model=local(str(raw["model"])),
        output_dir=output_dir if output_dir.is_absolute() else here / output_dir,
        methods=methods,
        budgets=budgets,
        finetune=finetune,
        humaneval=evaluation.get("humaneval") if "humaneval" in evaluation else None,
        judge=judge,
        evaluate_base=bool(raw.get("evaluate_base", True)),
        data_format=raw.get("format"),
        selection=selection,
        preferences=local(str(raw["preferences"])) if raw.get("preferences") else None,
        dpo=dpo,
    )


def _selection(source: Path, text: str, schema: RecipeSchema | None) -> dict[str, Any]:
    """The `select:` section by parameter, defaults filled in; each key checked as a recipe's (an unknown one names its line)."""
    from sftselect.io.recipes import recipe_settings

    if schema is None:
        raise OptionError(f"{source}: a select section is read with select's recipe schema; pass it to load_config")
    values = {}
    for name, (key, setting) in schema.given(recipe_settings(text, str(source), "select")).items():
        if name not in SELECT_KEYS:
            raise OptionError(
                f"{setting.where}: an experiment sets {name} itself (data, methods, fractions/sizes, output_dir); "
                f"its select section takes {', '.join(SELECT_KEYS)}"
            )
        values[key.parameter] = key.convert(setting)
    defaults = {key.parameter: key.default for key in schema.keys if key.name in SELECT_KEYS}
    return {**defaults, **values}


def _method(source: Path, entry: Any) -> MethodSpec:
    if isinstance(entry, str):
        return MethodSpec(name=entry, method=entry)
    if not isinstance(entry, dict) or "method" not in entry:
        raise OptionError(f"{source}: each method is a name or a mapping with 'method' (and optional name, model, options)")
    options = {key: value for key, value in entry.items() if key not in ("name", "method", "model")}
    return MethodSpec(name=str(entry.get("name", entry["method"])), method=str(entry["method"]), model=entry.get("model"), options=options)


def resolve_model(model: str) -> str:
    """A model name or path, with `packaged:smollm2` turned into the packaged SmolLM2-135M-Instruct folder."""
    if model in PACKAGED_MODELS:
        from sftselect.models import packaged

        return str(getattr(packaged, PACKAGED_MODELS[model])())
    if model.startswith("packaged:"):
        raise OptionError(f"unknown packaged model {model!r}; known: {', '.join(PACKAGED_MODELS)}")
    return model


def budget_label(budget: float | int) -> str:
    """'10%' for a fraction, '200' for a size."""
    return f"{budget * 100:g}%" if isinstance(budget, float) else str(budget)


def config_hash(content: Any) -> str:
    """A short stable hash of JSON-ready content."""
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class StepLog:
    """OUTPUT_DIR/steps.json: the hash each finished step's output was made with."""

    def __init__(self, folder: Path):
        self.path = folder / "steps.json"
        self.hashes: dict[str, str] = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else {}
        self.ran: list[str] = []
        self.skipped: list[str] = []

    def run(self, name: str, output: Path, content: Any, make: Callable[[Path], None]) -> Path:
        """Make OUTPUT with MAKE(temporary path) unless it exists with the same content hash."""
        digest = config_hash(content)
        if output.exists() and self.hashes.get(name) == digest:
            self.skipped.append(name)
            return output
        output.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(output) as temporary:
            make(temporary)
        # Re-read before writing, so that runs of other arms into the same folder keep their entries.
        if self.path.exists():
            self.hashes = json.loads(self.path.read_text(encoding="utf-8"))
        self.hashes[name] = digest
        with atomic_path(self.path) as temporary:
            temporary.write_text(json.dumps(self.hashes, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        self.ran.append(name)
        return output


def _write_json(path: Path, content: Any) -> None:
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _make_scorer(spec: MethodSpec, selection: dict[str, Any]) -> Any:
    """The registered scorer of the spec's method, with its model, options (an unknown one is an error) and the shared ones it takes."""
    from sftselect.pipeline import method_scorer

    shared = {name: selection[name] for name in SCORER_SHARED if name in selection}
    return method_scorer(spec.method, spec.model, spec.options, shared, batch_size=selection.get("batch_size"), device=selection.get("device"))


def _pipeline_options(selection: dict[str, Any]) -> dict[str, Any]:
    """`build_pipeline`'s filters, diversity and run options from the select section."""
    near_dedup = selection["near_dedup_threshold"] if selection.get("near_dedup") else None
    shared = ("dedup", "english_only", "diversity", "embedder", "batch_size", "device")
    return {"near_dedup": near_dedup, **{name: selection[name] for name in shared if name in selection}}


def _evaluate(model_path: str, config: ExperimentConfig, destination: Path) -> None:
    """Evaluate one model with every configured evaluation and write the scores as JSON."""
    humaneval = None if config.humaneval is None else HumanEvalSettings(**config.humaneval, unsafe_no_sandbox=config.unsafe_no_sandbox)
    judge = None if config.judge is None else JudgeSettings(**config.judge)
    evaluation = evaluate_model(model_path, humaneval=humaneval, judge=judge)
    _write_json(destination, {"model": model_path, **evaluation.as_dict()})


@dataclass
class ExperimentOutcome:
    """The results table's rows and what the run did."""

    rows: list[dict[str, Any]]
    table_path: Path
    plot_path: Path | None
    ran: list[str]
    skipped: list[str]


# What an experiment writes into OUTPUT_DIR (and its temporary files while it runs).
EXPERIMENT_FOLDER = FolderKind(
    "an experiment folder (steps.json, scores/, selections/, models/, results/, results.*)",
    required=(),
    allowed=("steps.json", "scores", "selections", "models", "results", "results.csv", "results.md", "results.png", ".*.tmp"),
)


def check_output_folder(folder: Path) -> None:
    """OUTPUT_DIR must be new, empty or an experiment's own (which a rerun resumes): nothing else in it is touched."""
    if folder.exists() and not folder.is_dir():
        raise OptionError(f"{folder}: output_dir names a file, not a folder")
    unknown = EXPERIMENT_FOLDER.unknown_entries(folder) if folder.is_dir() else []
    if unknown:
        raise OptionError(
            f"{folder} is not an experiment folder ({', '.join(unknown[:3])}); choose a new or empty output_dir"
        )


def run_experiment(config: ExperimentConfig) -> ExperimentOutcome:
    """Run (or resume) every step of the experiment and write results.csv, results.md and results.png."""
    from sftselect.io import read_dataset
    from sftselect.pipeline import build_pipeline, run_selection
    from sftselect.scorers.registry import method_diversity
    from sftselect.training.dpo import DpoSettings, dpo_finetune, read_preference_pairs
    from sftselect.training.finetune import FinetuneSettings, finetune

    if config.humaneval is not None:
        from sftselect.evaluation.sandbox import require_sandbox

        require_sandbox(config.unsafe_no_sandbox)  # before hours of fine-tuning, not after
    folder = config.output_dir
    check_output_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    steps = StepLog(folder)
    from sftselect.io.formats import parse_field_map

    selection = config.selection
    data = read_dataset(
        config.data, format=selection.get("format") or config.data_format, field_map=parse_field_map(selection.get("fields")),
        on_error=selection.get("on_error", "raise"),
    )
    records = data.records
    base_model = resolve_model(config.model)
    data_identity = {"data": str(Path(config.data).resolve()), "size": os.path.getsize(config.data) if os.path.isfile(config.data) else None,
                     "records": len(records), "format": data.format, **({"select": selection} if selection else {})}
    evaluation_identity = {"humaneval": config.humaneval, "judge": config.judge, "sftselect": __version__}
    pairs = read_preference_pairs(config.preferences) if config.preferences else None  # checked before any training
    preference_identity = None if pairs is None else {
        "preferences": str(Path(config.preferences).resolve()), "pairs": len(pairs),
        "size": os.path.getsize(config.preferences) if os.path.isfile(config.preferences) else None,
    }
    rows: list[dict[str, Any]] = []

    if config.evaluate_base:
        content = {"model": config.model, **evaluation_identity}
        result = steps.run("eval/base", folder / "results" / "base.json", content, lambda tmp: _evaluate(base_model, config, tmp))
        rows.append(_row("base", "-", 0, result))

    for spec in config.methods:
        score_content = {"method": spec.method, "model": spec.model, "options": spec.options, **data_identity}
        scores_path = steps.run(
            f"score/{spec.name}", folder / "scores" / f"{spec.name}.npy", score_content,
            lambda tmp, spec=spec: _save_scores(tmp, _make_scorer(spec, selection).score(records)),
        )
        scores = np.load(scores_path)
        for budget in config.budgets:
            run_name = f"{spec.name}-{budget_label(budget).replace('%', 'pct')}"
            budget_option = {"keep": budget} if isinstance(budget, float) else {"top": budget}
            pipeline = build_pipeline(spec.method, scored=True, **budget_option, **_pipeline_options(selection))
            select_content = {"scores": score_content, "budget": budget}
            if method_diversity(spec.method) is not None:
                select_content["diversity"] = method_diversity(spec.method)
            selection_path = steps.run(
                f"select/{run_name}", folder / "selections" / f"{run_name}.json", select_content,
                lambda tmp, pipeline=pipeline, run_name=run_name: _save_selection(
                    data, run_selection(records, pipeline, scores=scores).indices,
                    tmp, folder / "selections" / f"{run_name}.records.jsonl",
                ),
            )
            positions = json.loads(selection_path.read_text(encoding="utf-8"))["positions"]
            chosen = [records[i] for i in positions]
            settings = FinetuneSettings(merge=True, **_tuple_lists(config.finetune))
            train_content = {"selection": select_content, "model": config.model, "settings": settings.as_dict()}
            model_dir = steps.run(
                f"finetune/{run_name}", folder / "models" / run_name, train_content,
                lambda tmp, chosen=chosen, settings=settings: finetune(chosen, base_model, tmp, settings),
            )
            result = steps.run(
                f"eval/{run_name}", folder / "results" / f"{run_name}.json", {"train": train_content, **evaluation_identity},
                lambda tmp, model_dir=model_dir: _evaluate(str(model_dir), config, tmp),
            )
            rows.append(_row(spec.name, budget_label(budget), len(chosen), result))
            if pairs is None:
                continue
            # The sft+dpo arm: DPO on top of this run's SFT adapter (never retrained), at the same SFT budget.
            dpo_settings = DpoSettings(merge=True, **_tuple_lists(config.dpo))
            dpo_content = {"sft": train_content, "pairs": preference_identity, "settings": dpo_settings.as_dict()}
            dpo_dir = steps.run(
                f"dpo/{run_name}", folder / "models" / f"{run_name}+dpo", dpo_content,
                lambda tmp, model_dir=model_dir, dpo_settings=dpo_settings: dpo_finetune(
                    pairs, base_model, tmp, dpo_settings, sft_adapter=model_dir
                ),
            )
            result = steps.run(
                f"eval/{run_name}+dpo", folder / "results" / f"{run_name}+dpo.json", {"train": dpo_content, **evaluation_identity},
                lambda tmp, dpo_dir=dpo_dir: _evaluate(str(dpo_dir), config, tmp),
            )
            rows.append(_row(f"{spec.name}+dpo", budget_label(budget), len(chosen), result))

    table_path = _write_tables(folder, rows)
    plot_path = _plot(folder, rows)
    return ExperimentOutcome(rows, table_path, plot_path, steps.ran, steps.skipped)


def _save_scores(path: Path, scores: np.ndarray) -> None:
    with open(path, "wb") as file:
        np.save(file, np.asarray(scores, dtype=np.float64))


def _save_selection(data: Any, indices: np.ndarray, path: Path, records_path: Path) -> None:
    """The chosen positions (the step's output) and, for reading, the chosen records as written by `select`."""
    from sftselect.io import write_selection

    write_selection(data, indices, records_path, overwrite=True)
    _write_json(path, {"positions": [int(i) for i in indices], "records": str(records_path)})


def _tuple_lists(settings: dict[str, Any]) -> dict[str, Any]:
    return {key: tuple(value) if isinstance(value, list) else value for key, value in settings.items()}


def _row(method: str, budget: str, records: int, result_path: Path) -> dict[str, Any]:
    result = json.loads(result_path.read_text(encoding="utf-8"))
    row: dict[str, Any] = {"method": method, "budget": budget, "records": records}
    if "humaneval" in result:
        for name, value in result["humaneval"]["pass_at"].items():
            row[f"humaneval_{name}"] = round(value, 4)
    if "judge" in result:
        row["judge_win_rate"] = round(result["judge"]["win_rate"], 4)
    return row


def _write_tables(folder: Path, rows: list[dict[str, Any]]) -> Path:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(folder / "results.csv") as temporary:
        temporary.write_text(buffer.getvalue(), encoding="utf-8")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(column, "")) for column in columns) + " |" for row in rows]
    with atomic_path(folder / "results.md") as temporary:
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "results.md"


def _plot(folder: Path, rows: list[dict[str, Any]]) -> Path | None:
    """Score against selected records, one line per method (the base model as a dashed line); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    metrics = [key for key in rows[0] if key not in ("method", "budget", "records")] if rows else []
    if not metrics:
        return None
    figure, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        for method in dict.fromkeys(row["method"] for row in rows):
            points = sorted((row["records"], row[metric]) for row in rows if row["method"] == method and metric in row)
            if method == "base":
                axis.axhline(points[0][1], linestyle="--", color="grey", label="base model")
            else:
                axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
        axis.set_xlabel("selected records")
        axis.set_ylabel(metric)
        axis.legend()
    figure.tight_layout()
    with atomic_path(folder / "results.png") as temporary:
        figure.savefig(temporary, format="png", dpi=120)
    plt.close(figure)
    return folder / "results.png"

