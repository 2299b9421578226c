"""CLI hygiene, exit codes and error messages that need no Spark."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from batchrec import cli
from batchrec.errors import ConfigError, DataError, JobError, UsageError


def command_names() -> list[str]:
    return sorted(cli.cli.commands)


def test_contract_commands_exist():
    for name in ("validate", "generate", "train", "recommend", "rank", "evaluate", "demo"):
        assert name in cli.cli.commands


@pytest.mark.parametrize("name", command_names())
def test_every_command_and_option_is_documented(name):
    command = cli.cli.commands[name]
    assert command.help, f"{name} has no docstring"
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in ("n_users", "n_items", "n_interactions"):
            assert param.help, f"{name} {param.opts} has no help"


def test_help_is_instant_and_starts_no_jvm():
    # A separate interpreter proves that neither pyspark nor a JVM is touched by --help.
    code = (
        "import sys\n"
        "from batchrec.cli import main\n"
        "codes = [main(['--help'])] + [main([c, '--help']) for c in "
        "['validate','generate','train','recommend','rank','evaluate','demo']]\n"
        "assert codes == [0] * 8, codes\n"
        "assert 'pyspark' not in sys.modules, 'pyspark imported by --help'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage: batchrec" in result.stdout


def test_version():
    assert cli.main(["--version"]) == 0


@pytest.mark.parametrize("run_date", ["2026-13-01", "yesterday", "22/11/2026"])
def test_bad_run_date_is_a_usage_error(run_date, capsys):
    code = cli.main(["recommend", "--solution", "s", "--output", "o", "--run-date", run_date])
    assert code == 2
    err = capsys.readouterr().err
    assert f"'{run_date}' is not a date; expected YYYY-MM-DD" in err


def test_missing_required_option_is_a_usage_error(capsys):
    assert cli.main(["train", "--recipe", "popularity-count"]) == 2
    assert "--interactions" in capsys.readouterr().err


def test_unknown_recipe_and_out_of_range_num_results(capsys):
    assert cli.main(["train", "--recipe", "magic", "--interactions", "x", "--solution", "s"]) == 2
    assert "'magic' is not one of" in capsys.readouterr().err
    assert cli.main(["recommend", "--solution", "s", "--output", "o", "--num-results", "501"]) == 2
    assert "501 is not in the range 1<=x<=500" in capsys.readouterr().err
    assert cli.main(["recommend", "--solution", "s", "--output", "o", "--num-results", "0"]) == 2


def test_bad_key_value_param(capsys):
    assert cli.main(["train", "--recipe", "user-personalization", "--interactions", "x",
                     "--solution", "s", "--param", "rank"]) == 2
    assert "'rank' is not KEY=VALUE" in capsys.readouterr().err


def test_bad_k_list(capsys):
    assert cli.main(["evaluate", "--recipe", "popularity-count", "--interactions", "x",
                     "--report", "r.json", "--k", "5,ten"]) == 2
    assert "'5,ten' is not a comma-separated list of integers" in capsys.readouterr().err


def test_unknown_configuration_key_exits_2_before_spark(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[recommend]\nnum_result = 10\n")
    code = cli.main(["recommend", "--solution", "s", "--output", "o", "--config", str(bad)])
    assert code == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and "recommend.num_result" in err and str(bad) in err


def test_wrong_configuration_type_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[als]\nrank = 'sixty-four'\n")
    code = cli.main(["train", "--recipe", "user-personalization", "--interactions", "x",
                     "--solution", "s", "--config", str(bad)])
    assert code == 2
    assert "'als.rank' = 'sixty-four' has type str; expected int" in capsys.readouterr().err


def test_wrong_environment_variable_type_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("BATCHREC_RECOMMEND__NUM_RESULTS", "lots")
    assert cli.main(["recommend", "--solution", "s", "--output", "o"]) == 2
    assert "environment: 'recommend.num_results'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "error, code",
    [(DataError("bad rows in x.csv"), 1), (JobError("no solution at s"), 1),
     (UsageError("K too large"), 2), (ConfigError("bad key"), 2), (RuntimeError("boom"), 1)],
)
def test_error_to_exit_code_mapping(monkeypatch, capsys, error, code):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(cli, "_run_job", fail)
    assert cli.main(["rank", "--solution", "s", "--output", "o", "--input", "i.jsonl"]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("batchrec: ") and str(error) in err[-1]
    if code == 2 or isinstance(error, (DataError, JobError)):
        assert len(err) == 1  # known failures: one line, no traceback on stderr
