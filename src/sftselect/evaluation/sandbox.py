"""Run untrusted generated code in an operating-system sandbox, and judge it by tests it cannot reach.

A program is a solution (untrusted: defines the entry point) and its tests (trusted: define
`check(candidate)`, as HumanEval's do). They run in two processes joined by two pipes:

- The solution runs under bubblewrap (`bwrap`): new user, PID, network, mount, IPC, UTS and
  cgroup namespaces, no capabilities, no further user namespaces. It sees a read-only view of
  /usr, /lib* and the interpreter's prefix only (no /etc, no /home, nothing else of /root), its
  own /proc (only its own processes), a minimal /dev, a fresh tmpfs as its working folder (at
  most `file_bytes`), only a loopback interface of its own, and an environment of five
  variables: nothing of the caller's (bwrap itself is started with that environment too, so
  its pid 1 inside shows nothing either). At the time limit, or once the tests are done, the
  sandbox's pid 1 is killed: the kernel then kills every process in its PID namespace,
  `setsid` ones included, and this function returns only after they are gone.
- The tests run in a separate plain process (trusted code, from the problems file), where
  the entry point is a stand-in that sends each call's arguments to the solution and reads
  back its answer. Answers travel as Python literals read with `ast.literal_eval`: the tests
  only ever see plain values (str, bytes, numbers, tuples, lists, dicts, sets, bools, None),
  never an object of the solution's making, so an answer that "equals anything" is refused.

The verdict is the exit status of the tests' process: 0 only when `check` returned. The
solution cannot reach that process (another PID namespace, nothing shared but the pipe), so
printing anything and exiting with success (`os._exit(0)`) is a failure. What is not
guaranteed: that a solution does not recognise the test inputs it is called with (HumanEval's
are public); the number of processes a solution may start is unbounded when run as root (the
kernel exempts root from RLIMIT_NPROC), each capped by RLIMIT_AS, all killed at the time limit.

Without a working bwrap, generated code runs only when the caller asks for it with
`SandboxLimits(unsafe_no_sandbox=True)`: then the solution is a plain child process with the
resource limits alone, in a temporary folder, and can do whatever the user can.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from sftselect.errors import OptionError
from sftselect.progress import progress

OUTPUT_TAIL_CHARS = 2000
REPLY_BYTES = 1024 * 1024
SANDBOX_FOLDER = "/sandbox"
NOBODY = "65534"

_RUNNER = r'''
import ast, builtins, os, resource, sys
role, requests_fd, replies_fd, entry_point, source, reply_bytes, *limits = sys.argv[1:]
for name, value in zip(("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE"), limits):
    resource.setrlimit(getattr(resource, name), (int(value), int(value)))
with open(source, encoding="utf-8") as file:
    code = compile(file.read(), os.path.basename(source), "exec")
namespace = {"__name__": "__main__"}
if role == "solution":
    requests, replies = os.fdopen(int(requests_fd), "rb"), os.fdopen(int(replies_fd), "wb")
    exec(code, namespace)
    if not callable(namespace.get(entry_point)):
        sys.exit(f"the solution does not define {entry_point}()")
    for line in requests:
        args, kwargs = ast.literal_eval(line.decode("utf-8"))
        try:
            reply = ("return", namespace[entry_point](*args, **kwargs))
        except Exception as error:
            reply = ("raise", type(error).__name__, str(error))
        replies.write(repr(reply).encode("utf-8") + b"\n")
        replies.flush()
else:
    requests, replies = os.fdopen(int(requests_fd), "wb"), os.fdopen(int(replies_fd), "rb")
    def candidate(*args, **kwargs):
        try:
            requests.write(repr((args, kwargs)).encode("utf-8") + b"\n")
            requests.flush()
        except BrokenPipeError:
            line = b""
        else:
            line = replies.readline(int(reply_bytes) + 1)
        if not line.endswith(b"\n"):
            raise RuntimeError("the solution's answer is too long" if line else "the solution ended without answering")
        try:
            reply = ast.literal_eval(line.decode("utf-8"))
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, UnicodeDecodeError):
            raise RuntimeError(f"the solution answered with something that is not plain data: {line[:200]!r}") from None
        if isinstance(reply, tuple) and len(reply) == 2 and reply[0] == "return":
            return reply[1]
        if isinstance(reply, tuple) and len(reply) == 3 and reply[0] == "raise":
            error = getattr(builtins, str(reply[1]), None)
            if isinstance(error, type) and issubclass(error, Exception):
                raise error(reply[2])
            raise RuntimeError(f"the solution raised {reply[1]}: {reply[2]}")
        raise RuntimeError(f"the solution answered with something that is not an answer: {line[:200]!r}")
    exec(code, namespace)
    namespace[entry_point] = candidate
    namespace["check"](candidate)
'''


@dataclass(frozen=True)
class Program:
    """Untrusted SOLUTION code that defines ENTRY_POINT, and trusted TESTS that define check(candidate)."""

    solution: str
    tests: str
    entry_point: str


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one run of a program, and whether it may run without a sandbox where none works (unsafe)."""

    timeout_seconds: float = 10.0
    memory_bytes: int = 1024 * 1024 * 1024
    file_bytes: int = 16 * 1024 * 1024
    open_files: int = 64
    unsafe_no_sandbox: bool = False


@dataclass(frozen=True)
class ExecutionResult:
    """How one program ended: "passed", "failed" or "timed out", with the tail of its output."""

    status: str
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def find_bwrap() -> str | None:
    """The bubblewrap executable on PATH, if any."""
    return shutil.which("bwrap")


def _interpreter() -> str:
    """The real interpreter behind this one (a virtual environment's base): only the standard library is needed."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def _sandbox_command(bwrap: str, file_bytes: int, extra: Sequence[str] = ()) -> list[str]:
    """bwrap's options, up to `--`: the namespaces, the read-only system view, the tmpfs folder, the environment."""
    command = [
        bwrap, "--unshare-user", "--unshare-all", "--disable-userns", "--die-with-parent", "--new-session",
        "--cap-drop", "ALL", "--uid", NOBODY, "--gid", NOBODY, "--ro-bind", "/usr", "/usr",
    ]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            command += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            command += ["--ro-bind", top, top]
    for folder in sorted({os.path.realpath(sys.base_prefix), os.path.dirname(_interpreter())}):
        if folder != "/usr" and not folder.startswith("/usr/"):
            command += ["--ro-bind", folder, folder]
    command += [
        "--proc", "/proc", "--dev", "/dev", "--size", str(file_bytes), "--tmpfs", SANDBOX_FOLDER, *extra,
        "--remount-ro", "/", "--chdir", SANDBOX_FOLDER, "--clearenv",
    ]
    for name, value in _environment(SANDBOX_FOLDER).items():
        command += ["--setenv", name, value]
    return [*command, "--"]


def _environment(home: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"}


@lru_cache(maxsize=None)
def _sandbox_failure(bwrap: str) -> str | None:
    """Why BWRAP cannot start a sandboxed Python here, or None when it can."""
    command = [*_sandbox_command(bwrap, 1024 * 1024), _interpreter(), "-I", "-S", "-c", "pass"]
    try:
        done = subprocess.run(command, capture_output=True, timeout=30, env=_environment("/"))
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{bwrap} could not be run ({error})"
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        return f"{bwrap} could not start a sandbox ({message[-1] if message else f'exit status {done.returncode}'})"
    return None


def sandbox_problem() -> str | None:
    """Why generated code cannot be sandboxed here (bwrap missing or unable to create namespaces), or None."""
    bwrap = find_bwrap()
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    return _sandbox_failure(bwrap)


def require_sandbox(unsafe_no_sandbox: bool = False) -> str | None:
    """The bwrap to sandbox generated code with; None when there is none and UNSAFE_NO_SANDBOX allows that, else an error."""
    problem = sandbox_problem()
    if problem is None:
        return find_bwrap()
    if unsafe_no_sandbox:
        return None
    raise OptionError(
        f"refusing to run generated code without a sandbox: {problem}. Install bubblewrap "
        "(apt-get install bubblewrap) where user namespaces are allowed, or pass --unsafe-no-sandbox "
        "to run it anyway with only time and memory limits"
    )


def _limit_values(limits: SandboxLimits) -> list[str]:
    """RLIMIT_CPU, _AS, _FSIZE, _NOFILE and _CORE, as the runner sets them on itself before any program code runs."""
    values = (int(limits.timeout_seconds) + 1, limits.memory_bytes, limits.file_bytes, limits.open_files, 0)
    return [str(value) for value in values]


class _Child:
    """A started process: plain, or under bwrap with NAME.py of FOLDER in its sandbox and a pidfd on the sandbox's pid 1."""

    def __init__(self, command: list[str], folder: Path, name: str, fds: tuple[int, int], bwrap: str | None, limits: SandboxLimits):
        self.output = folder / f"{name}.out"
        self.init_pidfd = None
        status_read, status_write = os.pipe() if bwrap else (None, None)
        try:
            if bwrap is not None:
                source = ["--ro-bind", str(folder / f"{name}.py"), f"{SANDBOX_FOLDER}/{name}.py"]
                command = [*_sandbox_command(bwrap, limits.file_bytes, [*source, "--json-status-fd", str(status_write)]), *command]
                fds = (*fds, status_write)
            with open(self.output, "wb") as output:
                self.process = subprocess.Popen(
                    command, cwd=folder, env=_environment(str(folder)), stdin=subprocess.DEVNULL, stdout=output,
                    stderr=subprocess.STDOUT, pass_fds=fds, start_new_session=True,
                )
            if status_read is not None:
                os.close(status_write)
                status_write = None
                self.init_pidfd = _open_sandbox_init(status_read, self.process.pid)
        finally:
            for fd in (status_read, status_write):
                if fd is not None:
                    os.close(fd)

    def stop(self) -> None:
        """Kill the process and everything it started (in the sandbox: its whole PID namespace), and wait for it."""
        if self.init_pidfd is not None:
            # bwrap reports the program's exit at once, while its pid 1 may still wait for leftover processes:
            # kill pid 1, and wait until it is gone, which is after the kernel has killed all else in its namespace.
            try:
                signal.pidfd_send_signal(self.init_pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
            select.select([self.init_pidfd], [], [], 10)
            os.close(self.init_pidfd)
            self.init_pidfd = None
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()

    def tail(self) -> str:
        try:
            with open(self.output, "rb") as file:
                file.seek(0, os.SEEK_END)
                file.seek(max(0, file.tell() - OUTPUT_TAIL_CHARS))
                return file.read().decode("utf-8", errors="replace").strip()
        except OSError:
            return ""


def _open_sandbox_init(status_fd: int, bwrap_pid: int) -> int | None:
    """A pidfd on the sandbox's pid 1, from bwrap's first status line; None if it has ended already."""
    data = b""
    deadline = time.monotonic() + 30
    while b"\n" not in data and time.monotonic() < deadline:
        if not select.select([status_fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            break
        chunk = os.read(status_fd, 4096)
        if not chunk:
            break
        data += chunk
    try:
        pid = int(json.loads(data.split(b"\n")[0])["child-pid"])
        pidfd = os.pidfd_open(pid)
    except (ValueError, KeyError, TypeError, ProcessLookupError):
        return None
    # The pid is ours only if that process is still bwrap's child; checked while the pidfd pins it.
    try:
        parent = re.search(r"^PPid:\s*(\d+)", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    except OSError:
        parent = None
    if parent is None or int(parent.group(1)) != bwrap_pid or select.select([pidfd], [], [], 0)[0]:
        os.close(pidfd)
        return None
    return pidfd


def run_program(program: Program, limits: SandboxLimits = SandboxLimits()) -> ExecutionResult:
    """Run a program's solution in the sandbox and its tests beside it; passed only if check() returned."""
    bwrap = require_sandbox(limits.unsafe_no_sandbox)
    deadline = time.monotonic() + limits.timeout_seconds
    with tempfile.TemporaryDirectory(prefix="sftselect-sandbox-") as folder:
        workdir = Path(folder)
        (workdir / "solution.py").write_text(program.solution, encoding="utf-8")
        (workdir / "tests.py").write_text(program.tests, encoding="utf-8")
        requests_read, requests_write = os.pipe()
        replies_read, replies_write = os.pipe()
        runner = [_interpreter(), "-I", "-S", "-B", "-u", "-c", _RUNNER]
        limit_values = [str(REPLY_BYTES), *_limit_values(limits)]
        started: list[_Child] = []
        try:
            source = f"{SANDBOX_FOLDER}/solution.py" if bwrap else "solution.py"
            fds = (requests_read, replies_write)
            started.append(_Child([*runner, "solution", *map(str, fds), program.entry_point, source, *limit_values], workdir, "solution", fds, bwrap, limits))
            fds = (requests_write, replies_read)
            started.append(_Child([*runner, "tests", *map(str, fds), program.entry_point, "tests.py", *limit_values], workdir, "tests", fds, None, limits))
        except BaseException:
            for child in started:
                child.stop()
            raise
        finally:
            for fd in (requests_read, requests_write, replies_read, replies_write):
                os.close(fd)
        solution, tests = started
        try:
            tests.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            tests.stop()
            try:
                # With the tests gone the solution reads the end of its input and leaves; give it a moment to.
                solution.process.wait(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
            solution.stop()
        detail = "\n".join(part for part in (solution.tail(), tests.tail()) if part)
    if timed_out:
        return ExecutionResult("timed out", f"no result within {limits.timeout_seconds:g} s")
    if tests.process.returncode == 0:
        return ExecutionResult("passed")
    return ExecutionResult("failed", detail[-OUTPUT_TAIL_CHARS:])


def run_programs(
    programs: Sequence[Program], limits: SandboxLimits = SandboxLimits(), workers: int | None = None
) -> list[ExecutionResult]:
    """Run many programs, several at a time, each in its own sandbox; results in input order."""
    require_sandbox(limits.unsafe_no_sandbox)
    # A run waits on its two processes' start-up and on their pipes about as much as it computes.
    workers = workers or max(1, min(len(programs), 2 * (os.cpu_count() or 1)))
    with progress("running tests", total=len(programs), unit="programs") as bar, ThreadPoolExecutor(workers) as pool:
        results = []
        for result in pool.map(lambda program: run_program(program, limits), programs):
            results.append(result)
            bar.advance()
    return results
