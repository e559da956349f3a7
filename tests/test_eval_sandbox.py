"""The sandbox for generated code: hostile solutions fail or time out, cannot fake a pass, and leave the caller unharmed.

Each escape below worked against the audit-hook sandbox this replaced (issue 16). An escape is
written as the body of `escape()`, whose tests pass only if it returns True, i.e. only if the
escape got through; the caller's side is checked as well.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from sftselect.errors import OptionError
from sftselect.evaluation import sandbox
from sftselect.evaluation.sandbox import ExecutionResult, Program, SandboxLimits, run_program, run_programs

QUICK = SandboxLimits(timeout_seconds=5, memory_bytes=512 * 1024 * 1024)
PROBLEM = sandbox.sandbox_problem()
sandboxed = pytest.mark.skipif(PROBLEM is not None, reason=f"no sandbox for generated code here: {PROBLEM}")
RETURNS_TRUE = "def check(candidate):\n    assert candidate() is True\n"


def attempt(body: str, tests: str = RETURNS_TRUE, limits: SandboxLimits = QUICK) -> ExecutionResult:
    """Run BODY as the function escape(), which returns True once BODY got through."""
    code = textwrap.indent(textwrap.dedent(body), "    ")
    return run_program(Program(f"def escape():\n{code}\n    return True\n", tests, "escape"), limits)


def program(solution: str, tests: str = "def check(candidate):\n    assert candidate(2) == 4\n") -> Program:
    return Program(solution, tests, "double")


@sandboxed
def test_a_correct_solution_passes():
    assert run_program(program("def double(x):\n    return 2 * x\n"), QUICK).passed


@sandboxed
def test_a_wrong_answer_fails_with_the_tests_traceback():
    result = run_program(program("def double(x):\n    return x + 3\n"), QUICK)
    assert result.status == "failed" and "AssertionError" in result.detail


@sandboxed
@pytest.mark.parametrize(
    "solution",
    [
        "import os\nprint('passed')\nos._exit(0)\n",
        "import sys\nsys.exit(0)\n",
        "def double(x):\n    import os\n    print('passed', flush=True)\n    os._exit(0)\n",
    ],
    ids=["print-then-os._exit-at-import", "sys.exit-at-import", "os._exit-when-called"],
)
def test_exiting_with_success_before_the_tests_ran_is_a_failure(solution):
    result = run_program(program(solution), QUICK)
    assert result.status == "failed" and "the solution ended without answering" in result.detail


@sandboxed
def test_an_answer_that_claims_to_equal_anything_fails():
    solution = "class Anything:\n    def __eq__(self, other):\n        return True\n\ndef double(x):\n    return Anything()\n"
    result = run_program(program(solution), QUICK)
    assert result.status == "failed" and "not plain data" in result.detail


@sandboxed
def test_the_solutions_exception_reaches_the_tests_as_itself():
    tests = "def check(candidate):\n    try:\n        candidate(2)\n    except ZeroDivisionError:\n        return\n    assert False\n"
    assert run_program(program("def double(x):\n    return x / 0\n", tests), QUICK).passed


@sandboxed
def test_an_infinite_loop_is_killed_at_the_time_limit():
    limits = SandboxLimits(timeout_seconds=2)
    started = time.perf_counter()
    result = run_program(program("def double(x):\n    while True:\n        pass\n"), limits)
    assert result.status == "timed out"
    assert time.perf_counter() - started < limits.timeout_seconds + 3


@sandboxed
def test_a_memory_bomb_hits_the_address_space_limit():
    small = SandboxLimits(timeout_seconds=30, memory_bytes=256 * 1024 * 1024)
    result = attempt("blocks = []\nwhile True:\n    blocks.append(bytearray(50_000_000))\n", limits=small)
    assert result.status == "failed" and "MemoryError" in result.detail


@sandboxed
def test_raising_the_memory_limit_is_refused():
    result = attempt("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n")
    assert result.status == "failed" and "ValueError" in result.detail


@sandboxed
def test_writing_inside_the_working_folder_is_allowed():
    assert attempt("open('notes.txt', 'w').write('x')\nassert open('notes.txt').read() == 'x'\n").passed


@sandboxed
def test_switching_off_python_level_guards_does_not_open_the_file_system(tmp_path):
    target = tmp_path / "escaped.txt"
    result = attempt(
        f"""
        import __main__, gc
        getattr(__main__, "_BLOCKED", set()).clear()
        for thing in gc.get_objects():
            if getattr(thing, "__name__", "") == "_guard":
                thing.__code__ = (lambda event, args: None).__code__
        open({str(target)!r}, "w").write("x")
        """
    )
    assert not result.passed and "FileNotFoundError" in result.detail
    assert not target.exists()


@sandboxed
def test_dir_fd_arguments_cannot_write_remove_or_rename_outside(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    result = attempt(
        f"""
        import os
        folder = os.open({str(tmp_path)!r}, os.O_RDONLY)
        os.close(os.open("new.txt", os.O_CREAT | os.O_WRONLY, dir_fd=folder))
        os.rename("keep.txt", "moved.txt", src_dir_fd=folder, dst_dir_fd=folder)
        os.unlink("moved.txt", dir_fd=folder)
        """
    )
    assert not result.passed and "FileNotFoundError" in result.detail
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"] and victim.read_text() == "precious"


@sandboxed
def test_sqlite_cannot_change_a_database_outside(tmp_path):
    database = tmp_path / "scores.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute("create table scores (id text, score real)")
        connection.execute("insert into scores values ('a', 1.0)")
    result = attempt(
        f"""
        import sqlite3
        connection = sqlite3.connect({str(database)!r})
        connection.execute("update scores set score = 99")
        connection.commit()
        """
    )
    assert not result.passed and "unable to open database file" in result.detail
    with sqlite3.connect(database) as connection:
        assert connection.execute("select score from scores").fetchall() == [(1.0,)]


@sandboxed
def test_a_process_started_through_fork_exec_cannot_write_outside(tmp_path):
    target = tmp_path / "escaped.txt"
    # subprocess starts its child through _posixsubprocess.fork_exec.
    result = attempt(
        f"""
        import subprocess, sys
        subprocess.run([sys.executable, "-c", "open({str(target)!r}, 'w').write('x')"], check=True)
        """
    )
    assert not result.passed and "CalledProcessError" in result.detail
    assert not target.exists()


@sandboxed
def test_spawned_multiprocessing_children_cannot_write_outside(tmp_path):
    target = tmp_path / "escaped.txt"
    result = attempt(
        f"""
        import multiprocessing
        children = [multiprocessing.get_context("spawn").Process(target=exec, args=("open({str(target)!r}, 'w').write('x')",)) for _ in range(3)]
        for child in children:
            child.start()
        for child in children:
            child.join()
        assert all(child.exitcode == 0 for child in children), [child.exitcode for child in children]
        """
    )
    assert not result.passed and "AssertionError: [1, 1, 1]" in result.detail
    assert not target.exists()


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                if marker.encode() in file.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


@sandboxed
@pytest.mark.parametrize("ending", ["passed", "timed out"])
def test_a_setsid_grandchild_dies_with_the_program(ending):
    marker = f"grandchild-{uuid.uuid4().hex}"
    solution = f"""
def escape(hang=False):
    import subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", {marker!r}], start_new_session=True)
    while hang:
        time.sleep(1)
    return True
"""
    tests = RETURNS_TRUE + ("    candidate(True)\n" if ending == "timed out" else "")
    result = run_program(Program(solution, tests, "escape"), SandboxLimits(timeout_seconds=3))
    assert result.status == ending, result.detail
    assert _processes_with(marker) == []


@sandboxed
def test_a_process_outside_cannot_be_signalled():
    victim = subprocess.Popen(["sleep", "30"])
    try:
        result = attempt(
            f"""
            import os, signal
            try:
                signal.pidfd_send_signal(os.pidfd_open({victim.pid}), signal.SIGKILL)
            finally:
                os.kill({victim.pid}, signal.SIGKILL)
            """
        )
        assert not result.passed and "ProcessLookupError" in result.detail
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


@sandboxed
def test_system_secrets_and_roots_home_are_not_there():
    result = attempt("open('/etc/shadow').read()\n")
    assert result.status == "failed" and "FileNotFoundError" in result.detail
    home = set(os.listdir("/root")) if os.access("/root", os.R_OK) else set()
    interpreter = os.path.realpath(sys.base_prefix)
    others = home - {interpreter.split("/")[2]} if interpreter.startswith("/root/") else home
    if not others:
        pytest.skip("nothing in /root to look for")
    result = attempt(f"import os\nassert set(os.listdir('/root')) & {sorted(others)!r}\n")
    assert result.status == "failed"


@sandboxed
def test_the_callers_loopback_is_unreachable():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        result = attempt(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'x')\n")
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()
    assert not result.passed and "ConnectionRefusedError" in result.detail


@sandboxed
def test_the_callers_environment_is_nowhere_to_be_read(monkeypatch):
    secret = f"sk-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    result = attempt(
        f"""
        import os
        found = [name for name, value in os.environ.items() if value == {secret!r}]
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if {secret!r}.encode() in open(f"/proc/{{pid}}/environ", "rb").read():
                found.append(pid)
        assert found
        """
    )
    assert result.status == "failed" and "AssertionError" in result.detail


@sandboxed
def test_only_its_own_processes_are_visible():
    result = attempt(f"import os\nassert os.path.exists('/proc/{os.getpid()}')\n")
    assert result.status == "failed" and "AssertionError" in result.detail
    assert attempt("import os\nassert sorted(filter(str.isdigit, os.listdir('/proc'))) == ['1', '2']\n").passed


@sandboxed
def test_many_programs_keep_their_order():
    programs = [program(f"def double(x):\n    return {answer}\n") for answer in (4, 5, 4)]
    results = run_programs(programs, QUICK, workers=2)
    assert [result.passed for result in results] == [True, False, True]


def test_without_bwrap_generated_code_is_refused(monkeypatch):
    monkeypatch.setattr(sandbox, "find_bwrap", lambda: None)
    with pytest.raises(OptionError, match="bubblewrap.*not installed.*--unsafe-no-sandbox"):
        run_program(program("def double(x):\n    return 2 * x\n"), QUICK)


def test_a_bwrap_that_cannot_create_namespaces_counts_as_none(monkeypatch):
    monkeypatch.setattr(sandbox, "find_bwrap", lambda: shutil.which("false"))
    with pytest.raises(OptionError, match="could not start a sandbox"):
        run_programs([program("def double(x):\n    return 2 * x\n")], QUICK)


def test_the_unsafe_flag_runs_without_a_sandbox_and_still_judges_by_the_tests(monkeypatch):
    monkeypatch.setattr(sandbox, "find_bwrap", lambda: None)
    unsafe = SandboxLimits(timeout_seconds=5, unsafe_no_sandbox=True)
    assert run_program(program("def double(x):\n    return 2 * x\n"), unsafe).passed
    assert not run_program(program("import os\nprint('passed')\nos._exit(0)\n"), unsafe).passed
