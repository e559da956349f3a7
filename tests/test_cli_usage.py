"""Usage mistakes as the installed `sftselect` script meets them: one line on stderr, exit code 2, never a traceback.

Most cases run the console script in a subprocess; the same mistake on every subcommand is
also checked through `cli.main()` in this process, which is what the script calls, to keep
the run short.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import typer

from sftselect import cli

SCRIPT = Path(sys.executable).with_name("sftselect")


def _leaf_commands() -> dict[str, object]:
    """Every subcommand, by its words ("cache info"), read from the app itself so that none is missed."""
    found: dict[str, object] = {}

    def walk(group, words: tuple[str, ...]) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                walk(command, words + (name,))
            else:
                found[" ".join(words + (name,))] = command

    walk(typer.main.get_command(cli.app), ())
    return found


COMMANDS = _leaf_commands()
GROUPS = sorted({words.split()[0] for words in COMMANDS if " " in words})


def run_script(*arguments: str) -> subprocess.CompletedProcess:
    if not SCRIPT.exists():
        pytest.skip(f"the console script is not installed beside {sys.executable}")
    return subprocess.run([str(SCRIPT), *arguments], capture_output=True, text=True, timeout=120)


def assert_one_line_error(stderr: str, exit_code: int, expected: str) -> None:
    assert "Traceback" not in stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("error: ") and expected in stderr, stderr
    assert exit_code == 2


def run_main(monkeypatch, capsys, *arguments: str) -> tuple[int, str, str]:
    """`cli.main()` with these arguments: its exit code, stdout and stderr."""
    monkeypatch.setattr(sys, "argv", ["sftselect", *arguments])
    with pytest.raises(SystemExit) as done:
        cli.main()
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


def test_the_app_has_the_sixteen_documented_subcommands():
    assert sorted(COMMANDS) == sorted([
        "inspect", "convert", "select", "score", "embed", "finetune", "analyze", "experiment",
        "cache info", "cache clear", "ranker synth", "ranker judge", "ranker evaluate", "ranker train",
        "eval humaneval", "eval judge",
    ])


@pytest.mark.parametrize("words", sorted(COMMANDS))
def test_unknown_option_of_every_subcommand_is_one_line(words):
    done = run_script(*words.split(), "--bogus")
    assert_one_line_error(done.stderr, done.returncode, "No such option: --bogus")
    assert done.stdout == ""


def test_unknown_option_after_valid_arguments(tmp_path):
    done = run_script("select", str(tmp_path / "x.json"), "-o", str(tmp_path / "y.json"), "--bogus")
    assert_one_line_error(done.stderr, done.returncode, "No such option: --bogus")


@pytest.mark.parametrize("arguments", [["bogus"], ["cache", "bogus"], ["ranker", "bogus"], ["eval", "bogus"]])
def test_unknown_command_is_one_line(arguments):
    done = run_script(*arguments)
    assert_one_line_error(done.stderr, done.returncode, "No such command 'bogus'")


def test_missing_argument_is_one_line():
    done = run_script("select")
    assert_one_line_error(done.stderr, done.returncode, "Missing argument 'IN'")


def test_missing_option_value_is_one_line(tmp_path):
    done = run_script("select", str(tmp_path / "x.json"), "--keep")
    assert_one_line_error(done.stderr, done.returncode, "Option '--keep' requires an argument")


@pytest.mark.parametrize("option", ["--top", "--seed"])
def test_a_word_where_a_number_belongs_is_one_line(tmp_path, option):
    done = run_script("select", str(tmp_path / "x.json"), "-o", str(tmp_path / "y.json"), option, "abc")
    assert_one_line_error(done.stderr, done.returncode, f"Invalid value for '{option}'")


@pytest.mark.parametrize("arguments", [[], *([group] for group in GROUPS)])
def test_bare_command_or_group_shows_its_help_and_exits_2(arguments):
    # click's behaviour for a group run without a command (no_args_is_help): the help, exit code 2.
    done = run_script(*arguments)
    assert "Traceback" not in done.stderr
    assert "Usage:" in done.stdout + done.stderr
    assert done.returncode == 2


def _required(command) -> list:
    return [param for param in command.params if param.required]


def _value_option(command):
    """The first option of a command that takes a value (not a flag), if it has one."""
    return next((param for param in command.params if param.param_type_name == "option" and not param.is_flag), None)


@pytest.mark.parametrize("words", sorted(words for words, command in COMMANDS.items() if _required(command)))
def test_every_subcommand_names_a_missing_required_parameter(monkeypatch, capsys, words):
    first = _required(COMMANDS[words])[0]
    code, out, err = run_main(monkeypatch, capsys, *words.split())
    kind = "argument" if first.param_type_name == "argument" else "option"
    assert_one_line_error(err, code, f"Missing {kind}")
    assert out == ""


@pytest.mark.parametrize("words", sorted(words for words, command in COMMANDS.items() if _value_option(command)))
def test_every_subcommand_names_an_option_given_without_its_value(monkeypatch, capsys, words):
    option = _value_option(COMMANDS[words]).opts[0]
    code, out, err = run_main(monkeypatch, capsys, *words.split(), option)
    assert_one_line_error(err, code, f"Option '{option}' requires an argument")


def _number_option(command):
    """The first option of a command whose value is a number, read from the function's type hints."""
    hints = typing.get_type_hints(inspect.unwrap(command.callback))
    numbers = (int, float, typing.Optional[int], typing.Optional[float])
    return next((param for param in command.params if param.param_type_name == "option" and hints.get(param.name) in numbers), None)


@pytest.mark.parametrize("words", sorted(words for words, command in COMMANDS.items() if _number_option(command)))
def test_every_subcommand_refuses_a_word_for_a_number(monkeypatch, capsys, words):
    command = COMMANDS[words]
    given: list[str] = []
    for param in _required(command):
        given += ["x"] if param.param_type_name == "argument" else [param.opts[0], "x"]
    option = _number_option(command)
    code, out, err = run_main(monkeypatch, capsys, *words.split(), *given, option.opts[0], "abc")
    assert_one_line_error(err, code, "Invalid value for")
    assert option.opts[0] in err


def test_version_exits_0(monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "--version")
    assert (code, err) == (0, "")
    assert out.startswith("sftselect ")
