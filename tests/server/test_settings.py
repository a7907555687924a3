from __future__ import annotations

import pytest
from pydantic import ValidationError

from server.main import main
from server.settings import DEV_ADMIN_TOKEN, Settings


def test_development_allows_the_dev_token():
    assert Settings(environment="development").admin_token == DEV_ADMIN_TOKEN


@pytest.mark.parametrize("token", [DEV_ADMIN_TOKEN, ""])
def test_production_refuses_default_or_empty_secret(token):
    with pytest.raises(ValidationError, match="ADAMCU_ADMIN_TOKEN"):
        Settings(environment="production", admin_token=token)


def test_production_accepts_a_real_secret():
    assert (
        Settings(environment="production", admin_token="s3cret-value").environment == "production"
    )


def test_main_exits_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("ADAMCU_ENVIRONMENT", "production")
    monkeypatch.delenv("ADAMCU_ADMIN_TOKEN", raising=False)
    with pytest.raises(SystemExit, match="ADAMCU_ADMIN_TOKEN"):
        main(["--port", "0"])


def test_env_prefix(monkeypatch):
    monkeypatch.setenv("ADAMCU_DEFAULT_LEASE_SECONDS", "30")
    monkeypatch.setenv("ADAMCU_CORS_ORIGINS", '["http://a.example"]')
    s = Settings()
    assert s.default_lease_seconds == 30 and s.cors_origins == ["http://a.example"]
