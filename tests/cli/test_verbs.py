"""dirctl imports only the verb it runs: every verb still has its own arguments, help and errors, and
`dirctl --help` lists them all."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli import main, verbs
from cli.output import table_text

ROOT = Path(__file__).resolve().parents[2]
ALL_VERBS = [verb for verb, _module, _summary in verbs.VERBS]


def _choices(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    return next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))


def _placeholders(parser: argparse.ArgumentParser) -> set[str]:
    return {name for name, sub in _choices(parser).choices.items() if sub.get_default(main._VERB) is not None}


def test_every_module_registers_its_verbs_with_their_summaries():
    for verb, module, _summary in verbs.VERBS:
        parser = main.build_parser(verb)
        siblings = {other for other, other_module, _ in verbs.VERBS if other_module == module}
        assert _placeholders(parser) == set(ALL_VERBS) - siblings, verb
        lines = {action.dest: action.help for action in _choices(parser)._choices_actions}
        assert list(lines) == ALL_VERBS
        assert lines == verbs.SUMMARY


def _run_python(code: str, *, env: dict[str, str] | None = None) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return report


def test_help_lists_every_verb_without_importing_any():
    report = _run_python(
        "import contextlib, io, json, sys\n"
        "from cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "    main.main(['--help'])\n"
        "print(json.dumps({'help': out.getvalue(), 'modules': sorted(sys.modules)}))"
    )
    help_text = str(report["help"])
    for verb, _module, summary in verbs.VERBS:
        assert f"    {verb} " in help_text
        assert " ".join(summary.split()[:3]) in " ".join(help_text.split())
    loaded = set(report["modules"])  # type: ignore[arg-type]
    assert not loaded & {module for _verb, module, _summary in verbs.VERBS}


def test_get_sites_imports_neither_other_verbs_nor_yaml_nor_pydantic(tmp_path):
    report = _run_python(
        "import json, sys\n"
        "from cli import main\n"
        "code = main.main(['get', 'sites', '--server', 'http://127.0.0.1:9'])\n"
        "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}))",
        env={key: value for key, value in os.environ.items() if not key.startswith("DIRECTOR_")}
        | {"DIRECTOR_CONFIG": str(tmp_path / "absent.yaml")},
    )
    assert report["code"] == 3  # nothing listens there: the API cannot be reached
    loaded = set(report["modules"])  # type: ignore[arg-type]
    assert "cli.get" in loaded
    others = {module for _verb, module, _summary in verbs.VERBS} - {"cli.get"}
    assert not loaded & (others | {"yaml", "pydantic", "specs.models", "cli.gitsources", "cli.users"})


@pytest.mark.parametrize("verb", ALL_VERBS)
def test_each_verb_answers_its_own_help(verb, capsys):
    with pytest.raises(SystemExit) as exited:
        main.main([verb, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: dirctl {verb} ")
    # The connection options work after the verb too.
    assert "--server SERVER" in out


def test_a_verb_reports_its_own_usage_errors(capsys):
    with pytest.raises(SystemExit) as exited:
        main.main(["get", "sites", "--bogus"])
    assert exited.value.code == 2
    assert "dirctl: error: unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main.main(["get", "bogus"])
    assert exited.value.code == 2
    assert "dirctl get: error: argument kind: invalid choice: 'bogus'" in capsys.readouterr().err


def test_a_missing_or_unknown_verb_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main.main([])
    assert exited.value.code == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main.main(["nope"])
    assert exited.value.code == 2
    assert "invalid choice: 'nope' (choose from 'apply', 'create', 'get'" in capsys.readouterr().err


def test_options_before_the_verb_and_abbreviated_find_the_verb():
    args = main.parse(["--serv", "http://127.0.0.1:9", "get", "sites", "-o", "name"])
    assert (args.server, args.kind, args.output) == ("http://127.0.0.1:9", "sites", "name")
    assert args.run.__module__ == "cli.get"
    args = main.parse(["resume", "gitsource", "docs"])
    assert (args.run.__module__, args.suspend) == ("cli.suspend", False)


def test_table_text_aligns_columns_and_shows_each_cell_as_text():
    assert table_text(["NAME", "N", "NOTE"], [["a", 10, ""], ["bbbb", None, "x"]]) == (
        "NAME   N      NOTE\na      10\nbbbb   None   x\n"
    )
