"""`dirctl apply --dry-run=client` and `dirctl schema`, run as the installed command, offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DIRCTL = [sys.executable, "-m", "cli.main"]


def dirctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DIRCTL, *args], cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "dirctl"
    assert script.exists(), "run: pip install -e '.[dev]'"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    assert "exit codes:" in result.stdout and "apply" in result.stdout and "schema" in result.stdout


@pytest.mark.parametrize("example", sorted(path.name for path in EXAMPLES.glob("*.yaml")))
def test_each_example_validates(example):
    result = dirctl("apply", "--dry-run=client", "-f", str(EXAMPLES / example))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.endswith(" configured (dry run)\n")


def test_directory_and_stdin_together():
    stdin = "apiVersion: director.io/v1\nkind: Site\nmetadata: {name: piped}\n"
    result = dirctl("apply", "--dry-run=client", "-f", str(EXAMPLES), "-f", "-", stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "site/club configured (dry run)",
        "site/clock configured (dry run)",
        "site/hello configured (dry run)",
        "site/piped configured (dry run)",
    ]


def test_output_yaml_prints_objects_that_load_again():
    result = dirctl("apply", "--dry-run=client", "-f", str(EXAMPLES), "-o", "yaml")
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert [document["metadata"]["name"] for document in documents] == ["club", "clock", "hello"]
    assert list(documents[0]) == ["apiVersion", "kind", "metadata", "spec"]


def test_bad_file_gives_one_error_line_per_problem_and_exit_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: director.io/v1\n"
        "kind: Site\n"
        "metadata:\n"
        "  name: good\n"
        "---\n"
        "apiVersion: director.io/v1\n"
        "kind: Site\n"
        "metadata:\n"
        "  name: Bad_Name\n"
        "spec:\n"
        "  privileged: true\n"
        "  resources:\n"
        "    memory: 1T\n"
    )
    result = dirctl("apply", "--dry-run=client", "-f", str(bad))
    assert result.returncode == 1
    assert result.stdout == "site/good configured (dry run)\n"
    lines = result.stderr.splitlines()
    assert len(lines) == 3 and all(line.startswith(f"error: {bad}: document 2: ") for line in lines)
    assert any("metadata.name (line 9, column 9): 'Bad_Name' must be a site name" in line for line in lines)
    assert any("spec.privileged (line 11, column 3): unknown field" in line for line in lines)
    assert any("spec.resources.memory (line 13, column 13):" in line for line in lines)


def test_alias_bomb_from_stdin_is_refused():
    lines = ["b0: &b0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 10)}]" for i in range(1, 10)]
    bomb = "\n".join(lines) + "\n"
    result = dirctl("apply", "--dry-run=client", "-f", "-", stdin=bomb)
    assert result.returncode == 1
    assert "error: <stdin>: document 1:" in result.stderr and "alias" in result.stderr


def test_the_same_site_twice_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("apiVersion: director.io/v1\nkind: Site\nmetadata: {name: twin}\n")
    (tmp_path / "b.yaml").write_text("apiVersion: director.io/v1\nkind: Site\nmetadata: {name: twin}\n")
    result = dirctl("apply", "--dry-run=client", "-f", str(tmp_path))
    assert result.returncode == 1
    assert f"metadata.name: site 'twin' is also defined in {tmp_path / 'a.yaml'} document 1" in result.stderr


def test_missing_file_and_empty_input_fail():
    missing = dirctl("apply", "--dry-run=client", "-f", "/nonexistent/site.yaml")
    assert missing.returncode == 1 and "error: /nonexistent/site.yaml: cannot be read" in missing.stderr
    empty = dirctl("apply", "--dry-run=client", "-f", "-", stdin="")
    assert empty.returncode == 1 and "no objects passed to apply" in empty.stderr


def test_apply_without_client_dry_run_says_the_api_is_not_there_yet():
    result = dirctl("apply", "-f", str(EXAMPLES))
    assert result.returncode == 3
    assert "--dry-run=client" in result.stderr and result.stdout == ""


def test_usage_errors_exit_2():
    assert dirctl("apply", "--dry-run=client").returncode == 2
    assert dirctl("apply", "--dry-run=maybe", "-f", "x").returncode == 2
    assert dirctl().returncode == 2


def test_schema_site_is_json_schema_by_alias():
    result = dirctl("schema", "site")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    spec = schema["$defs"]["SiteSpec"]
    assert "healthCheck" in spec["properties"] and spec["additionalProperties"] is False
    assert {"apiVersion", "kind", "metadata", "spec"} <= set(schema["properties"])
