"""`sftselect select` killed at random points and re-run writes what an uninterrupted run writes, scoring no record twice.

The scorer is a plugin registered through the `sftselect.scorers` entry-point group (a
package folder put on PYTHONPATH): it scores each record by a hash of its content, slowly,
and logs `pid record-key` for every record it scores.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

RECORDS = 150
CHUNK = 10
PLUGIN = textwrap.dedent(
    """
    import hashlib, os, time

    import numpy as np

    from sftselect.fingerprints import record_key


    class ContentHashScorer:
        name = "content-hash"
        identity = {"name": "content-hash", "version": 1}

        def score(self, records):
            scores = []
            for record in records:
                time.sleep(0.01)
                digest = hashlib.sha256(record_key(record).encode()).digest()
                scores.append(int.from_bytes(digest[:6], "big") / 2**48)
                with open(os.environ["KILL_TEST_LOG"], "a") as log:
                    log.write(f"{os.getpid()} {record_key(record)}\\n")
            return np.array(scores)


    def factory(model=None):
        return ContentHashScorer()
    """
)


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "sftselect_kill_test_plugin.py").write_text(PLUGIN)
    info = folder / "sftselect_kill_test_plugin-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sftselect-kill-test-plugin\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[sftselect.scorers]\ncontent-hash = sftselect_kill_test_plugin:factory\n")
    return folder


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pool") / "pool.jsonl"
    rng = random.Random(3)
    words = "style answer clear steps data model river bread prime volcano tide poem list code".split()
    with open(path, "w") as handle:
        for number in range(RECORDS):
            record = {
                "instruction": f"Task {number}: " + " ".join(rng.choices(words, k=6)),
                "input": "",
                "output": " ".join(rng.choices(words, k=rng.randint(5, 40))),
            }
            handle.write(json.dumps(record) + "\n")
    return path


def select_command(pool: Path, output: Path, cache: Path) -> list[str]:
    return [
        sys.executable, "-m", "sftselect.cli", "--quiet", "select", str(pool), "-o", str(output),
        "--method", "content-hash", "--top", "50", "--with-scores", "--cache-path", str(cache), "--overwrite",
    ]


def environment(plugin_path: Path, log: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(plugin_path), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path, KILL_TEST_LOG=str(log), SFTSELECT_CACHE_CHUNK_SIZE=str(CHUNK))


def scored_lines(log: Path) -> list[tuple[int, str]]:
    if not log.exists():
        return []
    return [(int(pid), key) for pid, key in (line.split() for line in log.read_text().splitlines())]


def committed_keys(cache: Path) -> set[str]:
    if not cache.exists():
        return set()
    with sqlite3.connect(cache) as connection:
        return {key for (key,) in connection.execute("SELECT key FROM entries")}


def run_and_kill_when(command: list[str], env: dict[str, str], ready) -> int:
    """Start the command, SIGKILL it as soon as `ready()` holds (or it ends); return its pid."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while process.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return process.pid


def test_killed_runs_resume_to_the_uninterrupted_output_and_score_nothing_twice(plugin_path, pool, tmp_path):
    reference_out, reference_log = tmp_path / "reference.jsonl", tmp_path / "reference.log"
    done = subprocess.run(
        select_command(pool, reference_out, tmp_path / "reference.sqlite"),
        env=environment(plugin_path, reference_log), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(scored_lines(reference_log)) == RECORDS

    output, log, cache = tmp_path / "out.jsonl", tmp_path / "scored.log", tmp_path / "scores.sqlite"
    env = environment(plugin_path, log)
    rng = random.Random(11)
    kills, committed_at_kill = [], []
    for _ in range(3):
        target = len(scored_lines(log)) + rng.randint(3, 45)
        kills.append(
            run_and_kill_when(select_command(pool, output, cache), env, lambda: len(scored_lines(log)) >= target)
        )
        committed_at_kill.append(committed_keys(cache))
    assert 0 < len(committed_at_kill[-1]) < RECORDS, "the kills should fall inside the scoring"
    final = subprocess.Popen(select_command(pool, output, cache), env=env, stderr=subprocess.PIPE, text=True)
    assert final.wait(120) == 0, final.stderr.read()

    assert output.read_bytes() == reference_out.read_bytes()
    lines = scored_lines(log)
    runs = [*kills, final.pid]
    for number, committed in enumerate(committed_at_kill):
        later_runs = set(runs[number + 1 :])
        rescored = {key for pid, key in lines if key in committed and pid in later_runs}
        assert not rescored, f"{len(rescored)} records committed before kill {number + 1} were scored again"
    keys = [key for _, key in lines]
    assert set(keys) == committed_keys(cache) and len(set(keys)) == RECORDS
    assert len(keys) <= RECORDS + len(kills) * CHUNK, "a kill lost more than the chunk in flight"
