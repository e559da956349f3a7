"""Run untrusted generated Python in a child process that cannot hang, exhaust, or damage the caller.

What is guaranteed, and how:
- Time: a wall-clock timeout kills the child's whole process group; RLIMIT_CPU backs it up.
- Memory: RLIMIT_AS caps the child's address space, so a memory bomb fails with MemoryError.
- Processes: an audit hook refuses fork, exec, spawn and subprocess; RLIMIT_NPROC of 1 also
  stops new processes for an unprivileged user (the kernel does not apply it to root).
- Files: the child runs in a fresh temporary folder (also its HOME and TMPDIR); an audit hook,
  which Python code cannot remove, refuses any open-for-writing, removal, rename, mkdir, chmod
  or link whose path resolves outside that folder; RLIMIT_FSIZE caps the size of any file written.
- Network: with `unshare -rn` available the child runs in an empty network namespace (no
  interfaces at all); in every case the audit hook refuses socket connect, bind and sendto.
- Escape hatches: ctypes and raising the resource limits are refused by the hook, and a program passes only if it runs to the
  end: exiting early (sys.exit, os._exit) counts as a failure.
The audit hook is a guard for generated code, not a security boundary against a determined
attacker with native code; run this inside a container for hostile input.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from sftselect.progress import progress

OUTPUT_TAIL_CHARS = 2000

_RUNNER = r'''
import os, resource, sys, traceback
for _name, _value in zip(("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE", "RLIMIT_NPROC"), sys.argv[1:]):
    resource.setrlimit(getattr(resource, _name), (int(_value), int(_value)))
_nonce = sys.stdin.readline().strip()
_root = os.path.realpath(os.getcwd())
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_BLOCKED = {
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen",
    "os.kill", "os.killpg", "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
    "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function", "os.setuid", "os.chroot",
    "resource.setrlimit", "resource.prlimit",
}
_PATH_EVENTS = {
    "os.remove": 1, "os.rename": 2, "os.replace": 2, "os.rmdir": 1, "os.mkdir": 1, "os.chmod": 1,
    "os.chown": 1, "os.symlink": 2, "os.link": 2, "os.truncate": 1, "os.utime": 1, "shutil.rmtree": 1,
    "shutil.copyfile": 2, "shutil.copytree": 2, "shutil.move": 2, "os.chflags": 1, "os.setxattr": 1,
    "os.removexattr": 1,
}
def _inside(path):
    if isinstance(path, int):
        return True
    resolved = os.path.realpath(os.fsdecode(path))
    return resolved == _root or resolved.startswith(_root + os.sep)
def _guard(event, args):
    if event in _BLOCKED:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open":
        path, mode, flags = args
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & _WRITE_FLAGS)
        if writing and path is not None and not _inside(path):
            raise PermissionError(f"sandbox: writing {path!r} outside the working folder is not allowed")
    elif event in _PATH_EVENTS:
        for path in args[: _PATH_EVENTS[event]]:
            if isinstance(path, (str, bytes, os.PathLike)) and not _inside(path):
                raise PermissionError(f"sandbox: {event} on {path!r} outside the working folder is not allowed")
with open("program.py", encoding="utf-8") as _file:
    _code = compile(_file.read(), "program.py", "exec")
sys.addaudithook(_guard)
try:
    exec(_code, {"__name__": "__main__"})
except BaseException as _error:
    traceback.print_exception(_error)
    sys.stderr.flush()
    os._exit(1)
sys.stdout.write("\n" + _nonce + "\n")
sys.stdout.flush()
os._exit(0)
'''


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one run of a program."""

    timeout_seconds: float = 10.0
    memory_bytes: int = 1024 * 1024 * 1024
    file_bytes: int = 16 * 1024 * 1024
    open_files: int = 64


@dataclass(frozen=True)
class ExecutionResult:
    """How one program ended: "passed", "failed" or "timed out", with the tail of its output."""

    status: str
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@lru_cache(maxsize=1)
def network_isolation_available() -> bool:
    """Whether `unshare -rn` can start a process in a fresh user and network namespace here."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        done = subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _limit_values(limits: SandboxLimits) -> list[str]:
    """RLIMIT_CPU, _AS, _FSIZE, _NOFILE, _CORE and _NPROC, as the runner sets them on itself before the program runs."""
    cpu_seconds = int(limits.timeout_seconds) + 1
    # NPROC counts the user's existing processes too, so with 1 an unprivileged child can start none.
    values = (cpu_seconds, limits.memory_bytes, limits.file_bytes, limits.open_files, 0, 1)
    return [str(value) for value in values]


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - OUTPUT_TAIL_CHARS))
            return file.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def run_program(source: str, limits: SandboxLimits = SandboxLimits()) -> ExecutionResult:
    """Run a Python program in a fresh temporary folder under the sandbox's limits."""
    nonce = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="sftselect-sandbox-") as folder:
        workdir = Path(folder)
        (workdir / "program.py").write_text(source, encoding="utf-8")
        command = [sys.executable, "-I", "-B", "-c", _RUNNER, *_limit_values(limits)]
        if network_isolation_available():
            command = [shutil.which("unshare") or "unshare", "-rn", *command]
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": folder,
            "TMPDIR": folder,
            "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        with open(workdir / "stdout.txt", "wb") as stdout, open(workdir / "stderr.txt", "wb") as stderr:
            child = subprocess.Popen(
                command,
                cwd=folder,
                env=environment,
                stdin=subprocess.PIPE,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
            try:
                child.communicate(input=(nonce + "\n").encode(), timeout=limits.timeout_seconds)
            except subprocess.TimeoutExpired:
                _kill_group(child)
                return ExecutionResult("timed out", f"no result within {limits.timeout_seconds:g} s")
            finally:
                _kill_group(child)
        output = _tail(workdir / "stdout.txt")
        errors = _tail(workdir / "stderr.txt")
    if child.returncode == 0 and output.rstrip().endswith(nonce):
        return ExecutionResult("passed")
    if child.returncode < 0:
        errors += f"\nkilled by signal {signal.Signals(-child.returncode).name}"
    elif child.returncode == 0:
        errors += "\nexited before running to the end"
    return ExecutionResult("failed", errors.strip()[-OUTPUT_TAIL_CHARS:])


def _kill_group(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    child.wait()


def run_programs(
    sources: Sequence[str], limits: SandboxLimits = SandboxLimits(), workers: int | None = None
) -> list[ExecutionResult]:
    """Run many programs, several at a time, each in its own sandbox; results in input order."""
    workers = workers or max(1, min(len(sources), os.cpu_count() or 1))
    with progress("running tests", total=len(sources), unit="programs") as bar, ThreadPoolExecutor(workers) as pool:
        results = []
        for result in pool.map(lambda source: run_program(source, limits), sources):
            results.append(result)
            bar.advance()
    return results
