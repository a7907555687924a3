"""The CLIs' logging: httpx's per-request INFO lines are off unless DEBUG is asked for."""

import logging

import pytest

from client.logs import setup_logging


@pytest.fixture(autouse=True)
def restore_levels(monkeypatch):
    monkeypatch.delenv("ADAMCU_LOG_LEVEL", raising=False)
    loggers = [logging.getLogger(n) for n in ("", "httpx", "httpcore")]
    levels = [lg.level for lg in loggers]
    yield
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)


def _httpx_info_shown() -> bool:
    return logging.getLogger("httpx").isEnabledFor(logging.INFO)


def test_default_is_info_without_httpx_requests() -> None:
    assert setup_logging() == logging.INFO
    assert logging.getLogger("adamcu.worker").isEnabledFor(logging.INFO)
    assert not _httpx_info_shown() and logging.getLogger("httpcore").level == logging.WARNING


def test_verbose_or_debug_level_shows_them(monkeypatch) -> None:
    assert setup_logging(verbose=True) == logging.DEBUG and _httpx_info_shown()
    setup_logging()
    monkeypatch.setenv("ADAMCU_LOG_LEVEL", "debug")
    assert setup_logging() == logging.DEBUG and _httpx_info_shown()
    monkeypatch.setenv("ADAMCU_LOG_LEVEL", "WARNING")
    assert setup_logging() == logging.WARNING and not _httpx_info_shown()


def test_unknown_level_names_the_accepted_ones(monkeypatch) -> None:
    monkeypatch.setenv("ADAMCU_LOG_LEVEL", "loud")
    with pytest.raises(SystemExit, match="DEBUG, INFO"):
        setup_logging()
