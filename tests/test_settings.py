"""Settings come from the environment once, with defaults, and bad values are named."""

import subprocess
import sys

import pytest

from common.settings import ENVIRONMENT, Settings, SettingsError


def test_defaults_match_the_documented_table():
    settings = Settings.from_env({})
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.songs_bucket == ENVIRONMENT["SONGS_BUCKET"][0] == "songs"
    assert settings.max_upload_bytes == 100 * 1024 * 1024
    assert settings.demucs_model == "htdemucs"
    assert settings.mp3_bitrate == 320
    assert settings.api_keys == {}


def test_redis_url_wins():
    env = {"REDIS_URL": "redis://cache:7000/2", "REDIS_HOST": "ignored"}
    assert Settings.from_env(env).redis_url == "redis://cache:7000/2"


def test_kubernetes_style_redis_port_is_understood():
    # Kubernetes injects REDIS_PORT=tcp://<ip>:<port> for a Service named redis.
    settings = Settings.from_env({"REDIS_PORT": "tcp://10.0.0.7:6380"})
    assert settings.redis_url == "redis://10.0.0.7:6380/0"
    settings = Settings.from_env({"REDIS_HOST": "redis", "REDIS_PORT": "tcp://10.0.0.7:6380"})
    assert settings.redis_url == "redis://redis:6380/0"


def test_redis_password_and_database():
    settings = Settings.from_env({"REDIS_HOST": "r", "REDIS_PASSWORD": "pw", "REDIS_DB": "3"})
    assert settings.redis_url == "redis://:pw@r:6379/3"


@pytest.mark.parametrize("env, named", [
    ({"REDIS_PORT": "six"}, "REDIS_PORT"),
    ({"REDIS_PORT": "tcp://redis"}, "REDIS_PORT"),
    ({"MAX_UPLOAD_MB": "lots"}, "MAX_UPLOAD_MB"),
    ({"MAX_UPLOAD_MB": "0"}, "MAX_UPLOAD_MB"),
    ({"MINIO_SECURE": "maybe"}, "MINIO_SECURE"),
    ({"DEMUCS_PRECISION": "fp8"}, "DEMUCS_PRECISION"),
    ({"DEMUCS_OVERLAP": "1.5"}, "DEMUCS_OVERLAP"),
    ({"API_KEYS": "abc:root"}, "API_KEYS"),
])
def test_bad_values_name_the_variable(env, named):
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_api_keys_with_roles():
    settings = Settings.from_env({"API_KEYS": "writer, reader:ro ,other:rw,boss:admin"})
    assert settings.api_keys == {"writer": "rw", "reader": "ro", "other": "rw", "boss": "admin"}


def test_every_field_is_documented():
    fields = set(Settings.__dataclass_fields__) - {"hostname", "redis_url", "max_upload_bytes",
                                                   "api_keys"}
    documented = {name.lower() for name in ENVIRONMENT}
    assert fields - documented == set()


def test_the_readme_documents_every_variable():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for name, (default, _) in ENVIRONMENT.items():
        assert f"| `{name}` | `{default}` |" in readme or (
            not default and f"| `{name}` | (empty) |" in readme), name


REAL = {"MINIO_ACCESS_KEY": "store-user", "MINIO_SECRET_KEY": "s3cret-value-here"}


@pytest.mark.parametrize("env, named", [
    ({}, "MINIO_ACCESS_KEY"),
    ({"MINIO_ACCESS_KEY": "store-user"}, "MINIO_SECRET_KEY"),
    ({**REAL, "MINIO_SECRET_KEY": "CHANGE-ME-secret-key-at-least-8-chars"}, "MINIO_SECRET_KEY"),
    ({**REAL, "API_KEYS": "good-key,CHANGE-ME-api-key"}, "API_KEYS"),
    ({**REAL, "CALLBACK_SECRET": "changeme"}, "CALLBACK_SECRET"),
    ({**REAL, "REDIS_PASSWORD": "Change-Me-redis"}, "REDIS_PASSWORD"),
])
def test_services_refuse_empty_or_placeholder_secrets(env, named):
    settings = Settings.from_env(env)  # reading is fine; starting a service is not
    with pytest.raises(SettingsError, match=named):
        settings.require_secrets()


def test_real_secrets_start():
    settings = Settings.from_env({**REAL, "API_KEYS": "k1,k2:ro", "REDIS_PASSWORD": "pw"})
    assert settings.require_secrets() is settings


def test_a_service_with_a_placeholder_secret_exits_naming_it(service_env):
    env = {**service_env, "MINIO_SECRET_KEY": "CHANGE-ME-secret-key-at-least-8-chars"}
    out = subprocess.run([sys.executable, "-m", "logs"], env=env, capture_output=True,
                         text=True, timeout=30, check=False)
    assert out.returncode == 2
    assert "MINIO_SECRET_KEY holds a placeholder" in out.stderr


def test_worker_deaths_are_read_under_their_former_name_too():
    assert Settings.from_env({}).max_deaths == 3
    assert Settings.from_env({"MAX_ATTEMPTS": "5"}).max_deaths == 5
    assert Settings.from_env({"MAX_ATTEMPTS": "5", "MAX_DEATHS": "2"}).max_deaths == 2
    with pytest.raises(SettingsError, match="MAX_DEATHS"):
        Settings.from_env({"MAX_ATTEMPTS": "0"})


def test_the_models_served_default_to_the_one_loaded():
    assert Settings.from_env({"DEMUCS_MODEL": "demucs_unittest"}).demucs_models == (
        "demucs_unittest",)
    settings = Settings.from_env({"DEMUCS_MODELS": "htdemucs, htdemucs_6s,htdemucs",
                                  "DEFAULT_MODEL": "htdemucs"})
    assert (settings.demucs_models, settings.default_model) == (
        ("htdemucs", "htdemucs_6s"), "htdemucs")
    with pytest.raises(SettingsError, match="DEMUCS_MODELS"):
        Settings.from_env({"DEMUCS_MODELS": "htdemucs,../x"})


def test_the_default_model_is_named_not_taken_from_the_order_of_the_models():
    one = Settings.from_env({"DEMUCS_MODELS": "htdemucs,htdemucs_6s", "DEFAULT_MODEL": "htdemucs"})
    other = Settings.from_env({"DEMUCS_MODELS": "htdemucs_6s,htdemucs",
                               "DEFAULT_MODEL": "htdemucs"})
    assert one.default_model == other.default_model == "htdemucs"
    assert one.demucs_models == other.demucs_models == ("htdemucs", "htdemucs_6s")
    assert Settings.from_env({"DEMUCS_MODELS": "htdemucs_6s"}).default_model == "htdemucs_6s"
    assert Settings.from_env({"DEMUCS_MODEL": "demucs_unittest"}).default_model == (
        "demucs_unittest")


@pytest.mark.parametrize("env", [
    {"DEMUCS_MODELS": "htdemucs,htdemucs_6s"},
    {"DEMUCS_MODELS": "htdemucs,htdemucs_6s", "DEFAULT_MODEL": "htdemucs_ft"},
    {"DEMUCS_MODEL": "htdemucs", "DEFAULT_MODEL": "htdemucs_6s"},
])
def test_several_models_without_a_default_or_a_default_not_served_refuse_to_start(env):
    with pytest.raises(SettingsError, match="DEFAULT_MODEL"):
        Settings.from_env(env)
