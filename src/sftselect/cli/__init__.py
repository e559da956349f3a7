"""The `sftselect` command: parses options, calls the library, prints results. No logic of its own.

One module per command group; this one builds the app, lists its commands in the order `--help` shows them,
and turns every error a user can act on into one line on stderr. Modules import only typer and rich at the
top, so that `sftselect --help` stays fast; each command imports the library it calls when it runs.
"""

from __future__ import annotations

import sys
from typing import NoReturn, Optional

import typer
from rich.markup import escape

from sftselect import __version__
from sftselect.cli import analyze, cache, data, evaluate, finetune, pairs, ranker, run, score, select
from sftselect.cli.output import console
from sftselect.progress import set_quiet
from sftselect.errors import SftselectError, describe_os_error

app = typer.Typer(
    name="sftselect",
    help="Pick the best instruction-tuning data: read any common format, score, select, write back losslessly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# typer 0.29 bundles its own click (typer._click) and older releases use click itself: take the exceptions'
# module from a class typer re-exports, so that usage errors are caught whichever click is in use.
ClickException = sys.modules[typer.BadParameter.__module__].ClickException


def _version(value: bool) -> None:
    if value:
        print(f"sftselect {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summaries, only errors."),
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    set_quiet(quiet)


app.command("inspect")(data.inspect_command)
app.command("convert", help=data.CONVERT_HELP)(data.convert_command)
app.command("select")(select.select_command)
app.command("run", help=run.RUN_HELP, short_help=run.RUN_SHORT_HELP)(run.run_command)
app.command("pairs")(pairs.pairs_command)
app.command("score")(score.score_command)
app.command("embed")(score.embed_command)
app.command("finetune")(finetune.finetune_command)
app.command("analyze")(analyze.analyze_command)
app.command("experiment")(finetune.experiment_command)
app.add_typer(cache.app, name="cache")
app.add_typer(ranker.app, name="ranker")
app.add_typer(evaluate.app, name="eval")


def main() -> None:
    """Entry point: every mistake a user can act on becomes one line on stderr and a non-zero exit, never a traceback."""
    try:
        # Outside standalone mode typer returns the code of a typer.Exit (--version, Ctrl-C's 130) instead of exiting.
        exit_code = app(standalone_mode=False)
    except SftselectError as error:
        _fail(str(error))
    except ClickException as error:
        _fail_usage(error)
    except OSError as error:
        _fail(describe_os_error(error))
    except typer.Abort as error:
        # typer turns an EOFError escaping a command into Abort; say what ended.
        _fail(f"aborted: {error.__cause__}" if error.__cause__ else "aborted", exit_code=1)
    sys.exit(exit_code if isinstance(exit_code, int) else 0)


def _fail(message: str, exit_code: int = 2) -> NoReturn:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(exit_code)


def _fail_usage(error: ClickException) -> NoReturn:
    """A usage error as one line pointing at the command's help; a bare group shows its help, as click does."""
    if type(error).__name__ == "NoArgsIsHelpError":
        # Plain click carries the help as the message; typer's rich help has been printed already.
        if error.format_message().strip():
            error.show()
        sys.exit(error.exit_code)
    context = getattr(error, "ctx", None)
    hint = f" (see {context.command_path} --help)" if context is not None else ""
    _fail(error.format_message() + hint, error.exit_code)

