"""Configuration layers, precedence and errors (no Spark)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrec.config import Settings, load_settings, settings_as_dict
from batchrec.errors import ConfigError

REPO_CONF = Path(__file__).resolve().parents[1] / "conf"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def conf_dir(tmp_path):
    write(tmp_path / "base.toml", "[als]\nrank = 32\n[spark]\nmaster = 'local[1]'\n")
    write(tmp_path / "prod.toml", "[als]\nrank = 48\nalpha = 5.0\n")
    return tmp_path


def test_repo_base_toml_matches_the_dataclass_defaults():
    # conf/base.toml documents every default; the two must never drift apart.
    assert settings_as_dict(load_settings(conf_dir=REPO_CONF, environ={})) == settings_as_dict(Settings())


def test_repo_overlays_load():
    for overlay in ("local", "cluster"):
        load_settings(env=overlay, conf_dir=REPO_CONF, environ={})


def test_precedence_base_env_file_environment_flags(conf_dir, tmp_path):
    extra = write(tmp_path / "extra.toml", "[als]\nalpha = 7\nregParam = 0.5\n")
    environ = {"BATCHREC_ALS__REGPARAM": "0.25", "BATCHREC_RECOMMEND__NUM_RESULTS": "50"}
    settings = load_settings(env="prod", config_file=extra, environ=environ, conf_dir=conf_dir,
                             overrides={"recommend": {"num_results": 10}})
    assert settings.spark.master == "local[1]"       # base
    assert settings.als.rank == 48                   # env overlay beats base
    assert settings.als.alpha == 7.0                 # --config beats overlay; int widened to float
    assert settings.als.regParam == 0.25             # environment beats files; camelCase key found
    assert settings.recommend.num_results == 10      # flags beat environment


def test_unknown_key_names_key_file_and_choices(conf_dir):
    bad = write(conf_dir / "bad.toml", "[als]\nrnak = 3\n")
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=bad, conf_dir=conf_dir, environ={})
    message = str(err.value)
    assert "bad.toml" in message and "als.rnak" in message and "rank" in message


def test_unknown_section(conf_dir):
    bad = write(conf_dir / "bad.toml", "[alss]\nrank = 3\n")
    with pytest.raises(ConfigError, match=r"unknown section \[alss\]"):
        load_settings(config_file=bad, conf_dir=conf_dir, environ={})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[als]\nrank = 'big'\n", "'als.rank' = 'big' has type str; expected int"),
        ("[als]\nrank = 6.5\n", "expected int"),
        ("[recommend]\nexclude_seen = 1\n", "expected bool"),
        ("[prepare]\nevent_types = 'click'\n", "expected tuple"),
        ("[prepare.event_weights]\npurchase = 'x'\n", "'prepare.event_weights.purchase'"),
    ],
)
def test_wrong_type_names_key_and_expected_type(conf_dir, text, expected):
    bad = write(conf_dir / "bad.toml", text)
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=bad, conf_dir=conf_dir, environ={})
    assert expected in str(err.value) and "bad.toml" in str(err.value)


def test_environment_variable_of_wrong_type(conf_dir):
    with pytest.raises(ConfigError, match="environment: 'als.maxIter'"):
        load_settings(conf_dir=conf_dir, environ={"BATCHREC_ALS__MAXITER": "many"})


def test_missing_overlay_and_missing_file(conf_dir):
    with pytest.raises(ConfigError, match="--env staging"):
        load_settings(env="staging", conf_dir=conf_dir, environ={})
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(config_file=conf_dir / "nope.toml", conf_dir=conf_dir, environ={})


def test_invalid_toml(conf_dir):
    bad = write(conf_dir / "bad.toml", "[als\nrank = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config_file=bad, conf_dir=conf_dir, environ={})


def test_settings_are_frozen():
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.als.rank = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.spark.conf["x"] = "y"  # type: ignore[index]
