"""Mistakes as the installed `sftselect` script meets them: one line on stderr, a non-zero exit, never a traceback.

Usage errors (exit code 2) run the console script in a subprocess; the same mistake on every
subcommand is also checked through `cli.main()` in this process, which is what the script
calls, to keep the run short. Then files the operating system refuses, and streams.
"""

from __future__ import annotations

import errno
import gzip
import inspect
import io
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest
import typer

from sftselect import cli
from sftselect.io import containers

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


def script() -> list[str]:
    if not SCRIPT.exists():
        pytest.skip(f"the console script is not installed beside {sys.executable}")
    return [str(SCRIPT)]


def run_script(*arguments: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run([*script(), *arguments], capture_output=True, text=True, timeout=600, **options)


def assert_one_line_error(stderr: str, exit_code: int, *expected: str) -> None:
    assert "Traceback" not in stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("error: ") and all(part in stderr for part in expected), stderr
    assert exit_code == 2


def run_main(monkeypatch, capsys, *arguments: str) -> tuple[int, str, str]:
    """`cli.main()` with these arguments: its exit code, stdout and stderr."""
    monkeypatch.setattr(sys, "argv", ["sftselect", *arguments])
    with pytest.raises(SystemExit) as done:
        cli.main()
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


def test_the_app_has_the_eighteen_documented_subcommands():
    assert sorted(COMMANDS) == sorted([
        "inspect", "convert", "select", "run", "pairs", "score", "embed", "finetune", "analyze", "experiment",
        "cache info", "cache clear", "ranker synth", "ranker judge", "ranker evaluate", "ranker train",
        "eval humaneval", "eval judge",
    ])


@pytest.mark.parametrize("words", sorted(COMMANDS))
def test_unknown_option_of_every_subcommand_is_one_line(words):
    done = run_script(*words.split(), "--bogus")
    assert_one_line_error(done.stderr, done.returncode, "No such option", "--bogus")
    assert done.stdout == ""


def test_unknown_option_after_valid_arguments(tmp_path):
    done = run_script("select", str(tmp_path / "x.json"), "-o", str(tmp_path / "y.json"), "--bogus")
    assert_one_line_error(done.stderr, done.returncode, "No such option", "--bogus")


@pytest.mark.parametrize("arguments", [["bogus"], ["cache", "bogus"], ["ranker", "bogus"], ["eval", "bogus"]])
def test_unknown_command_is_one_line(arguments):
    done = run_script(*arguments)
    assert_one_line_error(done.stderr, done.returncode, "No such command", "bogus")


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


@pytest.mark.parametrize(("arguments", "expected"), [
    (["--scorer", "nope"], "unknown --scorer 'nope'"),
    (["--engine", "ray", "--backend", "vllm"], "--engine ray runs the transformers backend"),
])
def test_a_library_error_names_the_commands_flags(tmp_path, arguments, expected):
    done = run_script("score", str(tmp_path / "x.json"), "-o", str(tmp_path / "s.jsonl"), *arguments)
    assert_one_line_error(done.stderr, done.returncode, expected)


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


# Files the operating system refuses ------------------------------------------------

ROWS = [{"instruction": f"q{number}", "output": f"a{number}"} for number in range(3)]
JSONL = "".join(json.dumps(row) + "\n" for row in ROWS)


def write_jsonl(tmp_path: Path, name: str = "d.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(JSONL)
    return path


def run_unprivileged(*arguments: str) -> subprocess.CompletedProcess:
    """The script as a user whom file permissions bind: root is mapped to another user in a user namespace."""
    if os.geteuid() != 0:
        return run_script(*arguments)
    wrapper = ["bwrap", "--unshare-user", "--uid", "1000", "--gid", "1000", "--dev-bind", "/", "/", "--"]
    if shutil.which("bwrap") is None or subprocess.run([*wrapper, "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root, and bubblewrap cannot start a user namespace to drop root's file permissions")
    return subprocess.run([*wrapper, *script(), *arguments], capture_output=True, text=True, timeout=600)


def assert_one_line(done: subprocess.CompletedProcess, *expected: str) -> None:
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.stderr
    assert all(part in lines[0] for part in expected), lines[0]
    assert done.returncode == 2


def test_unreadable_input_is_one_line_naming_it(tmp_path):
    source = write_jsonl(tmp_path)
    source.chmod(0)
    assert_one_line(run_unprivileged("inspect", str(source)), f"{source}: permission denied")


def test_output_in_a_folder_without_write_permission_is_one_line_naming_the_folder(tmp_path):
    source = write_jsonl(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    done = run_unprivileged("convert", str(source), str(locked / "out.json"), "--to", "alpaca")
    assert_one_line(done, str(locked), "permission denied")


@pytest.mark.skipif(not os.path.isdir("/sys"), reason="needs Linux's read-only /sys")
def test_output_in_a_read_only_file_system_is_one_line_naming_the_folder(tmp_path):
    done = run_script("convert", str(write_jsonl(tmp_path)), "/sys/out.json", "--to", "alpaca")
    assert_one_line(done, "/sys")


def test_output_that_is_an_existing_folder_is_one_line_naming_it(tmp_path):
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "kept.txt").write_text("mine")
    done = run_script("convert", str(write_jsonl(tmp_path)), str(folder), "--to", "alpaca", "--overwrite")
    assert_one_line(done, str(folder))
    assert (folder / "kept.txt").read_text() == "mine"


def test_analyze_report_into_a_missing_folder_is_one_line_naming_the_folder(tmp_path):
    missing = tmp_path / "missing"
    done = run_script("analyze", str(write_jsonl(tmp_path)), "--no-lm", "--json", str(missing / "report.json"))
    assert_one_line(done, str(missing))


def cut_short_jsonl_gz(tmp_path: Path) -> Path:
    whole = gzip.compress("".join(json.dumps({"instruction": f"q{n}", "output": f"a{n}"}) + "\n" for n in range(3000)).encode())
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    return path


def test_cut_short_gzip_is_a_data_error_naming_the_file_not_an_abort(tmp_path):
    source = cut_short_jsonl_gz(tmp_path)
    done = run_script("convert", str(source), str(tmp_path / "out.jsonl"), "--to", "alpaca")
    assert_one_line(done, str(source), "cut short")
    assert not (tmp_path / "out.jsonl").exists()


def test_cut_short_gzip_under_skip_keeps_the_records_before_the_break(tmp_path):
    source = cut_short_jsonl_gz(tmp_path)
    out = tmp_path / "out.jsonl"
    done = run_script("convert", str(source), str(out), "--to", "alpaca", "--on-error", "skip")
    assert done.returncode == 0, done.stderr
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert 0 < len(written) < 3000 and written[-1]["instruction"] == f"q{len(written) - 1}"
    skipped = [json.loads(line) for line in (tmp_path / "out.jsonl.skipped.jsonl").read_text().splitlines()]
    assert len(skipped) == 1 and "cut short" in skipped[0]["reason"]


# Streams: stdin, pipes, FIFOs ---------------------------------------------------------


def test_inspect_reads_jsonl_from_stdin():
    done = run_script("inspect", "-", "--json", input=JSONL)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["source"], report["records"]) == ("<stdin>", 3)


def test_select_writes_a_selection_of_stdin(tmp_path):
    out = tmp_path / "out.jsonl"
    done = run_script("select", "-", "-o", str(out), "--method", "random", "--top", "2", input=JSONL)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) in ROWS for line in out.read_text().splitlines()] == [True, True]


def run_on_a_pipe(content: str, *arguments: str) -> subprocess.CompletedProcess:
    """The script given a pipe's /dev/fd path in place of FILE, as the shell's <(cat FILE) does."""
    read_end, write_end = os.pipe()
    with open(write_end, "w") as pipe:
        pipe.write(content)
    try:
        command = [argument.replace("FILE", f"/dev/fd/{read_end}") for argument in arguments]
        return run_script(*command, pass_fds=(read_end,))
    finally:
        os.close(read_end)


@pytest.mark.parametrize("content", [JSONL, json.dumps(ROWS)], ids=["jsonl", "json"])
def test_process_substitution_is_read_whole(content):
    done = run_on_a_pipe(content, "inspect", "FILE", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["records"] == 3


@pytest.mark.parametrize("command", [
    ["convert", "FILE", "OUT.json", "--to", "sharegpt"],
    ["select", "FILE", "-o", "OUT.json", "--method", "longest", "--top", "1"],
], ids=["convert", "select"])
def test_data_commands_read_a_pipe_without_hanging(tmp_path, command):
    out = tmp_path / "out.json"
    done = run_on_a_pipe(json.dumps(ROWS), *(part.replace("OUT.json", str(out)) for part in command))
    assert done.returncode == 0, done.stderr
    assert out.exists()


def test_stdin_from_a_terminal_is_refused_at_once():
    controller, terminal = pty.openpty()
    try:
        done = run_script("inspect", "-", stdin=terminal)
    finally:
        os.close(controller)
        os.close(terminal)
    assert_one_line(done, "standard input", "terminal")


def test_ctrl_c_while_waiting_for_a_fifo_exits_130(tmp_path):
    fifo = tmp_path / "d.jsonl"
    os.mkfifo(fifo)
    # A shell's background job inherits SIGINT ignored, and Python then keeps ignoring it: give the
    # script the default disposition a user's terminal gives it, whatever started the test run.
    process = subprocess.Popen(
        [*script(), "inspect", str(fifo)], stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # A non-blocking open for writing succeeds once the script has the FIFO open for reading.
        deadline = time.monotonic() + 60
        while True:
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "the script never opened the FIFO"
                time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        os.close(writer)
    finally:
        process.kill()
    assert "Traceback" not in stderr
    assert process.returncode == 130


def _raises_eio(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.read(4096)
    except OSError as error:
        return error.errno == errno.EIO
    return False


@pytest.mark.skipif(not _raises_eio("/proc/self/mem"), reason="reading /proc/self/mem gives no I/O error on this system")
def test_a_read_error_names_the_file_it_came_from():
    # An error on an open handle carries no file name; the message must still say which input failed.
    assert_one_line(run_script("inspect", "/proc/self/mem"), "/proc/self/mem: input/output error")


def test_a_read_error_on_a_stream_names_the_stream(tmp_path, monkeypatch, capsys):
    fifo = tmp_path / "d.jsonl"
    os.mkfifo(fifo)

    class FailingStream(io.RawIOBase):
        def read(self, size=-1):
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(containers, "open", lambda *arguments, **options: FailingStream(), raising=False)
    code, _, stderr = run_main(monkeypatch, capsys, "inspect", str(fifo))
    assert_one_line_error(stderr, code, f"{fifo}: input/output error")
