"""A local checkout just works: `make run` writes var/local.env once (a generated secret key and
DJANGO_DEBUG=true), settings load it before reading anything, so every `manage.py` command runs
without the user exporting anything. Production, which has no such file, still refuses to start
without a secret key; the real environment always wins over the file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.env import EnvError, load_env_file

ROOT = Path(__file__).resolve().parent.parent
REFUSAL = (
    "django.core.exceptions.ImproperlyConfigured: "
    "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off."
)
LOCAL_ENV = (
    "DJANGO_SECRET_KEY=local-secret-0123456789-abcdefghijklmnopqrstuvwxyz\nDJANGO_DEBUG=true\n"
)


def _checkout_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: nothing of Django's or Reelcast's set."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "REELCAST_")) and name != "DATABASE_URL"
    }
    return {**env, "REELCAST_VAR_DIR": str(var_dir), **extra}


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _debug_and_secret(env: dict[str, str]) -> str:
    code = "from django.conf import settings; print(settings.DEBUG, settings.SECRET_KEY)"
    result = _manage(env, "shell", "--no-imports", "-c", code)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.slow
def test_manage_py_runs_in_a_checkout_whose_var_holds_the_local_env_file(tmp_path):
    (tmp_path / "local.env").write_text(LOCAL_ENV)

    checked = _manage(_checkout_env(tmp_path), "check")

    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "System check identified no issues (0 silenced)."
    assert _debug_and_secret(_checkout_env(tmp_path)) == (
        "True local-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
    )


@pytest.mark.slow
def test_without_the_file_and_without_a_secret_key_it_still_refuses_to_start(tmp_path):
    refused = _manage(_checkout_env(tmp_path), "check")

    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == REFUSAL


@pytest.mark.slow
def test_the_real_environment_wins_over_the_file(tmp_path):
    (tmp_path / "local.env").write_text(LOCAL_ENV)

    production_like = _checkout_env(tmp_path, DJANGO_DEBUG="false")
    other_secret = _checkout_env(tmp_path, DJANGO_SECRET_KEY="from-the-environment-" + "x" * 40)

    assert _debug_and_secret(production_like).startswith("False local-secret-")
    assert _debug_and_secret(other_secret) == "True from-the-environment-" + "x" * 40


@pytest.mark.slow
def test_reelcast_env_file_names_another_file_and_a_missing_one_is_an_error(tmp_path):
    elsewhere = tmp_path / "elsewhere.env"
    elsewhere.write_text("DJANGO_DEBUG=true\n")
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    (var_dir / "local.env").write_text("DJANGO_DEBUG=false\n")

    named = _checkout_env(var_dir, REELCAST_ENV_FILE=str(elsewhere))
    missing = _manage(_checkout_env(var_dir, REELCAST_ENV_FILE=str(tmp_path / "nope.env")), "check")

    assert _debug_and_secret(named).startswith("True dev-only-insecure-key")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1] == (
        f"config.env.EnvError: REELCAST_ENV_FILE names {tmp_path / 'nope.env'}, "
        "which does not exist"
    )


def test_the_file_format_is_key_value_lines_with_comments_export_and_quotes(tmp_path, monkeypatch):
    for name in ("RC_PLAIN", "RC_DOUBLE", "RC_SINGLE", "RC_EXPORTED", "RC_EMPTY", "RC_SET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RC_SET", "from the environment")
    path = tmp_path / "local.env"
    path.write_text(
        "# written by make run\n"
        "\n"
        "RC_PLAIN=a=b#c\n"
        'RC_DOUBLE="two words"\n'
        "RC_SINGLE='$HOME stays'\n"
        "export RC_EXPORTED = yes\n"
        "RC_EMPTY=\n"
        "RC_SET=from the file\n"
    )

    loaded = load_env_file(path)

    assert loaded == ["RC_PLAIN", "RC_DOUBLE", "RC_SINGLE", "RC_EXPORTED", "RC_EMPTY"]
    assert [
        os.environ[n] for n in ("RC_PLAIN", "RC_DOUBLE", "RC_SINGLE", "RC_EXPORTED", "RC_EMPTY")
    ] == ["a=b#c", "two words", "$HOME stays", "yes", ""]
    assert os.environ["RC_SET"] == "from the environment"


def test_a_malformed_line_stops_the_process_naming_the_file_and_line(tmp_path, monkeypatch):
    monkeypatch.delenv("RC_FIRST", raising=False)
    path = tmp_path / "local.env"
    path.write_text("RC_FIRST=1\nthis is not a setting\n")

    with pytest.raises(EnvError) as refused:
        load_env_file(path)

    assert str(refused.value) == f"{path}:2: expected KEY=VALUE, got 'this is not a setting'"


def test_a_missing_file_sets_nothing(tmp_path):
    assert load_env_file(tmp_path / "local.env") == []
