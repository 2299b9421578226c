"""``batchrec config show`` (the layer of every value), ``batchrec doctor``, help defaults from the
configuration, consistent option names, and docs/reference.md's configuration table (checked
against conf/base.toml and the CLI so it cannot drift). No Spark session."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click
import pytest

from batchrec import cli, config
from batchrec.commands import config_show, doctor
from batchrec.config import Settings, load_settings, section_types, settings_as_dict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "docs" / "reference.md"


@pytest.fixture
def clean_environment(monkeypatch):
    """No BATCHREC_* variable from the caller's shell."""
    import os

    for name in list(os.environ):
        if name.startswith("BATCHREC_"):
            monkeypatch.delenv(name)
    return monkeypatch


# --- config show ----------------------------------------------------------------------------------

def test_config_show_names_the_layer_of_every_overridden_key(clean_environment, tmp_path, capsys):
    extra = tmp_path / "extra.toml"
    extra.write_text("[als]\nalpha = 3.0\n[recommend]\nnum_results = 40\n")
    clean_environment.setenv("BATCHREC_ALS__RANK", "12")
    clean_environment.setenv("BATCHREC_RECOMMEND__NUM_RESULTS", "30")
    assert cli.main(["config", "show", "--env", "cluster", "--config", str(extra)]) == 0
    out = capsys.readouterr().out
    lines, section = {}, ""
    for line in out.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#"):
            lines[f"{section}.{line.split('=')[0].strip()}"] = line
    assert re.search(r"rank = 12\s+# BATCHREC_ALS__RANK$", lines["als.rank"])
    assert re.search(r"alpha = 3\.0\s+# --config$", lines["als.alpha"])
    assert re.search(r"num_results = 30\s+# BATCHREC_RECOMMEND__NUM_RESULTS$", lines["recommend.num_results"])
    assert re.search(r"num_results = 25\s+# base\.toml$", lines["segment.num_results"])
    assert re.search(r"shuffle_partitions = 200\s+# conf/cluster\.toml$", lines["spark.shuffle_partitions"])
    assert re.search(r"maxIter = 7\s+# base\.toml$", lines["als.maxIter"])
    assert "# lookback_days is not set" in out and re.search(r"lookback_days is not set\s+# default", out)
    assert f"#   --config: {extra}" in out and f"#   base.toml: {REPO / 'conf' / 'base.toml'}" in out
    assert "#   environment: BATCHREC_ALS__RANK, BATCHREC_RECOMMEND__NUM_RESULTS" in out


def test_config_show_is_toml_that_loads_back_as_the_same_configuration(clean_environment, tmp_path):
    clean_environment.setenv("BATCHREC_PREPARE__EVENT_WEIGHTS", '{purchase = 3.0, "add to cart" = 2}')
    clean_environment.setenv("BATCHREC_SPARK__CONF", '{"spark.sql.shuffle.partitions" = "4"}')
    clean_environment.setenv("BATCHREC_VALIDATION__CSV_DELIMITER", '"\\t"')
    shown = config_show.show(env="local")
    saved = tmp_path / "shown.toml"
    saved.write_text(shown)
    tomllib.loads(shown)  # valid TOML
    original = load_settings(env="local")
    again = load_settings(config_file=saved, environ={}, conf_dir=tmp_path)  # no base.toml there
    assert settings_as_dict(again) == settings_as_dict(original)


def test_config_show_json(clean_environment, capsys):
    clean_environment.setenv("BATCHREC_ALS__RANK", "12")
    assert cli.main(["config", "show", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["values"]["als.rank"] == {"value": 12, "from": "BATCHREC_ALS__RANK"}
    assert doc["values"]["recommend.num_results"]["from"] == "base.toml"
    assert doc["values"]["segment.fraction"] == {"value": None, "from": "default"}
    assert set(doc["values"]) == {f"{s}.{k}" for s, keys in settings_as_dict(Settings()).items() for k in keys}


def test_a_bad_layer_is_a_configuration_error(clean_environment, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[als]\nrnak = 3\n")
    assert cli.main(["config", "show", "--config", str(bad)]) == 2
    assert "unknown key 'als.rnak'" in capsys.readouterr().err


def test_the_packaged_base_toml_is_found_outside_a_checkout(clean_environment, tmp_path):
    packaged = tmp_path / "site-packages" / "batchrec" / "conf"
    packaged.mkdir(parents=True)
    (packaged / "base.toml").write_text("[als]\nrank = 99\n")
    (packaged / "cluster.toml").write_text("[als]\nalpha = 9.0\n")
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    clean_environment.chdir(elsewhere)
    clean_environment.setattr(config, "SOURCE_CONF_DIR", tmp_path / "no-checkout" / "conf")
    clean_environment.setattr(config, "PACKAGED_CONF_DIR", packaged)
    assert config.default_conf_dir() == packaged
    settings = load_settings(env="cluster")
    assert settings.als.rank == 99 and settings.als.alpha == 9.0
    # BATCHREC_CONF_DIR and ./conf come first.
    (elsewhere / "conf").mkdir()
    (elsewhere / "conf" / "base.toml").write_text("[als]\nrank = 5\n")
    assert config.default_conf_dir() == elsewhere / "conf"
    clean_environment.setenv("BATCHREC_CONF_DIR", str(packaged))
    assert config.default_conf_dir() == packaged


# --- doctor -----------------------------------------------------------------------------------------

def test_doctor_prints_one_line_per_check_and_exits_1_when_one_fails(clean_environment, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    writable = tmp_path / "new" / "out"
    code = cli.main(["doctor", "--output", str(writable), "--output", str(blocker / "under")])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert all(re.match(r"^(ok|FAIL)\s+\S", line) for line in lines), out
    by_name = {}
    for line in lines:
        status, rest = line.split(None, 1)
        by_name.setdefault(rest[:22].strip(), []).append((status, rest[22:].strip()))
    for name in ("python", "python packages", "java", "pyspark / delta-spark", "configuration"):
        assert by_name[name][0][0] == "ok", out
    assert "delta jars" in by_name and "executor python" in by_name
    assert by_name["output"][0] == ("ok", f"{writable}: writable (created under {tmp_path})")
    assert by_name["output"][1][0] == "FAIL" and f"sits under the file {blocker}" in by_name["output"][1][1]
    assert code == 1 and err.strip() == "batchrec: error: 1 of 9 checks failed: output"
    assert not writable.exists() and not list(tmp_path.glob("**/_batchrec_doctor_*"))


def test_doctor_reports_a_bad_configuration(clean_environment, capsys):
    clean_environment.setenv("BATCHREC_ALS__RANK", '"lots"')
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^FAIL\s+configuration\s+environment: 'als.rank' = 'lots'", out, re.MULTILINE)


def test_doctor_parses_java_versions_and_checks_the_spark_pair():
    assert doctor.java_major('openjdk version "17.0.15" 2025-04-15') == 17
    assert doctor.java_major('java version "1.8.0_392"') == 8
    assert doctor.java_major('openjdk version "21" 2023-09-19') == 21
    assert doctor.java_major("garbage") is None
    check = doctor.check_spark_pair()
    assert check.ok and "pyspark 4.0.1, delta-spark 4.0.1" in check.detail


# --- help and names ------------------------------------------------------------------------------

def _help(*args) -> str:
    cli._help_settings.cache_clear()
    try:
        return cli.cli.get_command(click.Context(cli.cli), args[0]).get_help(
            click.Context(cli.cli.get_command(click.Context(cli.cli), args[0]), info_name=args[0]))
    finally:
        cli._help_settings.cache_clear()


def test_help_shows_the_defaults_of_the_configuration(clean_environment):
    text = " ".join(_help("recommend").split())
    assert "[default: 25, from recommend.num_results; 1<=x<=500]" in text
    assert "[default: --exclude-seen, from recommend.exclude_seen]" in text
    assert "default 25" not in text and "default on" not in text  # no copies in prose
    clean_environment.setenv("BATCHREC_RECOMMEND__NUM_RESULTS", "40")
    assert "[default: 40, from recommend.num_results" in " ".join(_help("recommend").split())
    validate = " ".join(_help("validate").split())
    assert "[default: 1000, from validation.min_interactions" in validate
    assert "[default: 0.01, from validation.max_reject_fraction" in validate
    assert "[default: 7, from dynamodb.ttl_days" in " ".join(_help("export-dynamodb").split())


def test_generate_and_demo_take_counts_as_num_options_and_the_old_spellings_still_work():
    for name in ("generate", "demo"):
        command = cli.cli.commands[name]
        visible = {o for p in command.params if not getattr(p, "hidden", False) for o in p.opts}
        assert {"--num-users", "--num-items", "--num-interactions"} <= visible
        assert not {"--users", "--items", "--interactions"} & visible
    ctx = cli.cli.commands["generate"].make_context("generate", ["--users", "3", "--num-items", "4",
                                                                 "--interactions", "5", "--output", "x"])
    counts = cli._counts(dict(ctx.params))
    assert (counts["n_users"], counts["n_items"], counts["n_interactions"]) == (3, 4, 5)
    ctx = cli.cli.commands["generate"].make_context("generate", ["--num-items", "4", "--output", "x"])
    with pytest.raises(click.UsageError, match="Missing option '--num-users'"):
        cli._counts(dict(ctx.params))


def test_solution_version_is_the_name_and_version_a_hidden_old_spelling():
    assert cli.main(["--version"]) == 0  # the program's own --version
    for name in ("recommend", "rank", "related", "segment"):
        command = cli.cli.commands[name]
        visible = {o for p in command.params if not getattr(p, "hidden", False) for o in p.opts}
        assert "--solution-version" in visible and "--version" not in visible
        ctx = command.make_context(name, ["--solution", "s", "--output", "o", "--version", "v7"]
                                   + (["--input", "i"] if name == "rank" else []))
        assert ctx.params["old_version"] == "v7" and ctx.params["version"] == "latest"


def test_log_levels_warn_and_warning_are_both_accepted():
    from batchrec.spark import spark_log_level

    choice = next(p for p in cli.cli.commands["train"].params if p.name == "log_level").type
    for spelling in ("WARN", "warn", "WARNING", "warning"):
        assert choice.convert(spelling, None, None).upper() in ("WARN", "WARNING")
    for spelling in ("WARN", "WARNING", "warning"):
        settings = load_settings(environ={"BATCHREC_SPARK__LOG_LEVEL": f'"{spelling}"'})
        assert spark_log_level(settings.spark.log_level) == "WARN"


# --- docs/reference.md's configuration table -----------------------------------------------------

def _table_rows() -> dict[str, list[str]]:
    text = REFERENCE.read_text()
    start = text.index("<!-- config-table")
    rows = {}
    for line in text[start:].splitlines()[3:]:
        if not line.startswith("| `"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = cells
    return rows


def _cli_flags() -> dict[str, set[str]]:
    """``{config key: {flag, ...}}`` of every option that overrides a configuration key."""
    found: dict[str, set[str]] = {}

    def walk(group):
        for command in group.commands.values():
            if isinstance(command, click.Group):
                walk(command)
                continue
            for param in command.params:
                key = getattr(param, "config_key", None)
                if key:
                    found.setdefault(key, set()).add("/".join(param.opts + param.secondary_opts))

    walk(cli.cli)
    return found


def test_reference_config_table_matches_base_toml_and_the_cli():
    rows = _table_rows()
    schema = {f"{section}.{key}" for section, cls in section_types().items()
              for key in settings_as_dict(Settings())[section]}
    assert set(rows) == schema, (sorted(schema - set(rows)), sorted(set(rows) - schema))
    base = tomllib.loads((REPO / "conf" / "base.toml").read_text())
    recipe_sections = set(config.RECIPE_SECTIONS)
    flags = _cli_flags()
    for key, cells in rows.items():
        section, _, name = key.partition(".")
        assert cells[3] == f"`BATCHREC_{section.upper()}__{name.upper()}`", key
        if name in base.get(section, {}):
            assert cells[1] == f"`{config_show.toml_value(base[section][name])}`", (key, cells[1])
        else:
            assert cells[1] == "unset" and getattr(Settings(), section).__getattribute__(name) is None, key
        named = set(re.findall(r"`(--[a-z-]+(?:/--[a-z-]+)?)[ `]", cells[2]))
        if section in recipe_sections:
            assert cells[2] == f"`--param {name}=...` (train, evaluate)", key
        else:
            assert named == flags.get(key, set()), (key, named, flags.get(key))
    assert set(flags) <= set(rows)
