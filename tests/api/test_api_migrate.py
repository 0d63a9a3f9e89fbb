"""Director's processes that start together on a new state directory each migrate its database first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_processes_starting_together_on_a_new_state_directory_all_start(tmp_path: Path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DIRECTOR_", "DJANGO_"))}
    environment["DIRECTOR_STATE_DIR"] = str(tmp_path / "state")
    starting = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator.api_server",
                "shell-credential",
                "--output",
                str(tmp_path / f"credential-{index}"),
            ],
            cwd=REPO,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for index in range(4)
    ]
    outputs = [process.communicate(timeout=300)[0].decode() for process in starting]
    for process, output in zip(starting, outputs, strict=True):
        assert process.returncode == 0, output
    # Each wrote the credential it issued.
    assert all((tmp_path / f"credential-{index}").exists() for index in range(4))
