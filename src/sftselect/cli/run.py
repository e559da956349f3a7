"""`sftselect run RECIPE.yaml`: a whole selection from one file, whose keys are the options of `select`."""

from __future__ import annotations

from typing import List, Optional

import typer

from sftselect.cli.options import EstimateOption
from sftselect.cli.output import console
from sftselect.cli.select import select_command, select_schema

RUN_SHORT_HELP = "Run a whole selection from one recipe file: select's options as YAML keys, --set KEY=VALUE overrides."
RUN_HELP = (
    "Run a selection described in a recipe file: exactly what `select` does, its options given as YAML keys, e.g. "
    "`input: data.json`, `output: best.json`, `keep: 10%`, `dedup: true` on four lines.\n\n"
    "Every option of `sftselect select` is a key, named as its long flag without dashes and with _ for - "
    "(--min-score: min_score, --field: field, a list); the input file is `input`. Keys left out take select's "
    "defaults; an unknown key or a wrong value is an error naming the key and its line. Relative paths are relative "
    "to the folder you run in, as on the command line.\n\n"
    "Every selection (by `run` or `select`) writes OUT.recipe.yaml beside its output: every key with its value, the "
    "sftselect version and the models' identities, so `sftselect run OUT.recipe.yaml --set output=OTHER` (or "
    "--overwrite) re-runs it exactly. See docs/recipes.md."
)


def run_command(
    recipe: str = typer.Argument(..., metavar="RECIPE.yaml", help="The recipe: `select`'s options as `key: value` lines."),
    overrides: Optional[List[str]] = typer.Option(
        None, "--set", metavar="KEY=VALUE",
        help="Override or add a key, the value read as YAML (--set keep=5% --set dedup=true --set 'field=\\[instruction=question]'). Repeatable.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Same as --set overwrite=true: replace earlier outputs of this selection."),
    estimate: EstimateOption = False,
) -> None:
    """Run the selection a recipe describes, with --set overrides, through `select` itself."""
    from sftselect._version import __version__
    from sftselect.io.recipes import MODELS_KEY, VERSION_KEY, Setting, parse_override, read_recipe, recipe_path
    from sftselect.progress import is_quiet

    settings = read_recipe(recipe)
    changes = dict(parse_override(text) for text in overrides or [])
    if overwrite:
        changes["overwrite"] = Setting(True, "--overwrite")
    options = select_schema().resolve(recipe, settings, changes)
    written_by = settings.get(VERSION_KEY)
    if written_by is not None and str(written_by.value) != __version__ and not is_quiet():
        console.print(f"note: {recipe} was written by sftselect {written_by.value}; this is {__version__}", highlight=False)
    select_command(**options, estimate=estimate)
    if estimate:
        return
    recorded = settings.get(MODELS_KEY)
    if recorded is not None and not is_quiet():
        # The recipe this run wrote beside its output holds the models as they were now.
        used = read_recipe(recipe_path(options["output"] or options["indices_out"]))[MODELS_KEY].value
        changed = sorted(name for name in {*recorded.value, *used} if recorded.value.get(name) != used.get(name))
        if changed:
            console.print(
                f"note: models differ from those {recipe} records ({', '.join(changed)}: another checkpoint, weights "
                "or settings), so the selection may differ from the one it recorded", highlight=False,
            )
