"""docker-compose.yml, the Dockerfiles and .env.example, checked without a Docker engine.

Every command must start something that exists (an importable ``python -m`` module, a console
script of pyproject.toml) with flags its parser defines; every ADAMCU_* variable a container gets
must be read by the code; every interpolated variable must be in .env.example; volumes,
ports, health checks and depends_on conditions must fit together; health checks only where
something listens; interpolation one level deep (Compose v1 and podman-compose read nothing
else); every variable docs/deploy.md documents reaches a container.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from server.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
SCRIPTS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
CODE = "\n".join(
    p.read_text()
    for d in ("server", "trainer", "oracle", "client", "stack")
    for p in (ROOT / d).rglob("*.py")
)
OURS = [name for name, s in SERVICES.items() if str(s.get("image", "")).startswith("adamcu")]
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}")


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` (nested defaults too)."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        have = env.get(name)
        if op in (":-", ":?") and not have or op in ("-", "?") and have is None:
            if op.endswith("?"):
                raise KeyError(f"{name}: {arg}")
            return interpolate(arg, env)
        return have or ""

    return _VAR.sub(one, value)


def variables(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set().union(*(variables(v) for v in node.values()), set())
    if isinstance(node, list):
        return set().union(*(variables(v) for v in node), set())
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", str(node)))


def command(name: str) -> list[str]:
    cmd = SERVICES[name]["command"]
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def environment(name: str) -> dict[str, str]:
    env = SERVICES[name].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: str(v) for k, v in env.items()}


SECRETS = {**env_example(), "POSTGRES_PASSWORD": "pw-for-tests", "ADAMCU_ADMIN_TOKEN": "x" * 32}
LISTENING = {"postgres", "redis", "server", "server-2", "proxy", "minio"}


# --- services and commands -------------------------------------------------------------------


def test_the_stack_has_its_services():
    assert {"postgres", "redis", "migrate", "server", "worker", "worker-cpu", "oracle"} <= set(
        SERVICES
    )
    assert command("migrate")[:3] == ["python", "-m", "server.migrate"]
    assert SERVICES["migrate"]["restart"] == "no"
    assert SERVICES["worker-cpu"]["profiles"] == ["cpu"]
    assert SERVICES["oracle"]["profiles"] == ["oracle"]
    assert command("worker") == command("worker-cpu")
    assert environment("worker") == environment("worker-cpu")


@pytest.mark.parametrize("name", OURS)
def test_command_starts_something_that_exists(name: str):
    cmd = command(name)
    if cmd[:2] == ["python", "-m"]:
        module, args = cmd[2], cmd[3:]
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"{name}: python -m {module} is not importable"
        if spec.submodule_search_locations:  # a package: needs __main__
            assert importlib.util.find_spec(f"{module}.__main__"), f"{module} has no __main__"
    else:
        assert cmd[0] in SCRIPTS, f"{name}: {cmd[0]} is not a console script in pyproject"
        args = cmd[1:]
    for flag in (a for a in args if a.startswith("--")):
        assert f'"{flag}"' in CODE, f"{name}: no parser in the code defines {flag}"


def test_worker_and_oracle_parse_their_compose_commands(monkeypatch: pytest.MonkeyPatch):
    from oracle.cli import parse_args as oracle_args
    from trainer.worker.main import parse_args as worker_args

    for name, parse in (("worker-cpu", worker_args), ("oracle", oracle_args)):
        for key, value in environment(name).items():
            monkeypatch.setenv(key, interpolate(value, SECRETS))
        args = [interpolate(a, SECRETS) for a in command(name)[3:]]
        parsed = parse(args)
        assert "server:8000" in str(parsed)
        # no dedicated token in .env: the admin token, not an empty one
        assert "x" * 32 in str(parsed)


def test_gpu_worker_reserves_an_nvidia_gpu_and_cpu_is_the_fallback():
    devices = SERVICES["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices and devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert SERVICES["worker"]["profiles"] == ["gpu"]
    assert SERVICES["worker"]["build"]["dockerfile"] == "Dockerfile.gpu"
    assert "deploy" not in SERVICES["worker-cpu"]
    assert SERVICES["worker-cpu"]["build"]["dockerfile"] == "Dockerfile"


# --- environment --------------------------------------------------------------------------


def _read_by_code(var: str) -> bool:
    field = var.removeprefix("ADAMCU_").lower()
    return field in Settings.model_fields or f'"{var}"' in CODE


@pytest.mark.parametrize("name", OURS)
def test_every_adamcu_variable_is_read_by_the_code(name: str):
    for var in environment(name):
        if var.startswith("ADAMCU_"):
            assert _read_by_code(var), f"{name}: {var} is neither a Settings field nor read"


def test_env_example_covers_every_interpolated_variable():
    example = env_example()
    used = variables(COMPOSE)
    assert used - set(example) == set(), "missing from .env.example"
    assert set(example) - used - {"COMPOSE_PROFILES"} == set(), "unused in .env.example"
    for var in example:
        if var.startswith("ADAMCU_") and var not in ("ADAMCU_IMAGE_TAG",):
            assert _read_by_code(var) or var.endswith("_TOKEN"), var


def test_env_example_holds_no_secrets_and_compose_refuses_to_start_without_them():
    example = env_example()
    assert example["POSTGRES_PASSWORD"] == "" and example["ADAMCU_ADMIN_TOKEN"] == ""
    with pytest.raises(KeyError, match="ADAMCU_ADMIN_TOKEN"):
        interpolate(environment("server")["ADAMCU_ADMIN_TOKEN"], example)
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(environment("migrate")["ADAMCU_DATABASE_URL"], example)


def _server_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in list(__import__("os").environ):
        if key.startswith("ADAMCU_"):
            monkeypatch.delenv(key)
    for key, value in environment("server").items():
        monkeypatch.setenv(key, interpolate(value, env))
    return Settings()


def test_server_environment_builds_production_settings(monkeypatch: pytest.MonkeyPatch):
    settings = _server_settings(SECRETS, monkeypatch)
    assert settings.environment == "production"
    assert settings.database_url.startswith("postgresql+psycopg://adamcu:pw-for-tests@postgres:")
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.cors_origins == [] and settings.max_body_bytes == 2 * 1024 * 1024
    assert (
        environment("migrate")["ADAMCU_DATABASE_URL"]
        == environment("server")["ADAMCU_DATABASE_URL"]
    )


def test_server_refuses_the_default_admin_token_in_production(monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(ValidationError, match="ADAMCU_ADMIN_TOKEN"):
        _server_settings({**SECRETS, "ADAMCU_ADMIN_TOKEN": "dev-admin-token"}, monkeypatch)


def test_workers_reach_the_server_by_its_service_name_and_port():
    port = command("server")[command("server").index("--port") + 1]
    assert SERVICES["server"]["ports"] == ["${SERVER_PORT:-8000}:" + port]
    assert f":{port}/ready" in " ".join(SERVICES["server"]["healthcheck"]["test"])
    for name in ("worker", "worker-cpu", "oracle"):
        assert environment(name)["ADAMCU_SERVER"] == f"http://server:{port}"


# --- volumes, health checks, depends_on ---------------------------------------------------------


def test_volumes_are_declared_and_named():
    declared = set(COMPOSE["volumes"])
    assert {"pgdata", "datasets", "checkpoints"} <= declared
    for name, service in SERVICES.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("${"):  # a host folder (bind mount)
                continue
            assert source in declared, f"{name}: volume {source} is not declared"
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]
    assert "checkpoints:/checkpoints" in SERVICES["worker-cpu"]["volumes"]
    assert environment("worker-cpu")["ADAMCU_CHECKPOINTS"] == "/checkpoints"
    assert environment("worker-cpu")["ADAMCU_DATA"].startswith("/data/")


def test_depends_on_conditions_fit_their_targets():
    seen = set()
    for name, service in SERVICES.items():
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            # an optional target only for a service of its own profile(s)
            optional = set(SERVICES[target].get("profiles", []))
            mine = set(service.get("profiles", []))
            assert not optional or (mine and mine <= optional), f"{name} needs optional {target}"
            condition = spec["condition"]
            seen.add(condition)
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{target} has no healthcheck"
            else:
                assert condition == "service_completed_successfully", condition
                assert SERVICES[target].get("restart") == "no", f"{target} is not one-off"
    assert seen == {"service_healthy", "service_completed_successfully"}
    assert SERVICES["server"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )


# --- Dockerfiles ----------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfile(dockerfile: str):
    text = (ROOT / dockerfile).read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert "TORCH_VERSION=2.14.1" in text and '"torch==${TORCH_VERSION}"' in text
    assert "TORCHVISION_VERSION=0.29.1" in text and '"torchvision==${TORCHVISION_VERSION}"' in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    ignored = (ROOT / ".dockerignore").read_text().split()
    for source in re.findall(r"^COPY (\S+)", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"{dockerfile} copies missing {path}"
            assert path not in ignored, f".dockerignore drops {path}"
    if dockerfile == "Dockerfile":
        assert "https://download.pytorch.org/whl/cpu" in text


def _has_compose() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _has_compose(), reason="no `docker compose` on this machine")
def test_docker_compose_config_accepts_the_file(tmp_path: Path):  # pragma: no cover
    env = tmp_path / ".env"
    env.write_text("\n".join(f"{k}={v}" for k, v in SECRETS.items()))
    subprocess.run(
        [
            "docker",
            "compose",
            "--env-file",
            str(env),
            "-f",
            str(ROOT / "docker-compose.yml"),
            "config",
            "-q",
        ],
        check=True,
    )


# --- health checks, interpolation, documented variables ------------------------------------


def test_health_checks_only_where_something_listens():
    for name, service in SERVICES.items():
        check = service.get("healthcheck") or {}
        if name in LISTENING:
            assert check.get("test") and not check.get("disable"), f"{name} needs a health check"
        elif name in OURS:  # built from our images: never inherit a check of the image
            assert check == {"disable": True}, f"{name} serves nothing: healthcheck disable"
    for dockerfile in ("Dockerfile", "Dockerfile.gpu"):
        assert not re.search(r"^HEALTHCHECK", (ROOT / dockerfile).read_text(), re.M)


def test_interpolation_is_one_level_deep():
    text = (ROOT / "docker-compose.yml").read_text()
    for m in _VAR.finditer(text):
        assert "$" not in (m.group(3) or ""), f"nested interpolation: {m.group(0)}"
    assert not re.search(r"\$[A-Za-z_]", text), "bare $VAR: write ${VAR}"


def _documented_variables() -> set[str]:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    table = doc[doc.index("### Environment") :].split("\n\n")[2]
    return {
        v for row in table.splitlines()[2:] for v in re.findall(r"`([A-Z_]+)`", row.split("|")[1])
    }


def test_every_documented_variable_is_wired():
    documented = _documented_variables()
    assert {"ADAMCU_THREADS", "ADAMCU_LOG_FORMAT", "DATASETS_DIR"} <= documented
    assert documented - set(env_example()) == set(), "documented but not in .env.example"
    assert documented - variables(COMPOSE) - {"COMPOSE_PROFILES"} == set(), "never passed"


def test_server_gets_threads_and_log_format(monkeypatch: pytest.MonkeyPatch):
    settings = _server_settings({**SECRETS, "ADAMCU_THREADS": "3"}, monkeypatch)
    assert settings.threads == 3 and settings.log_format == "json"


def test_gpu_image_has_the_cityscapes_extra_and_a_dataset_mount():
    assert '".[server,trainer,cityscapes]"' in (ROOT / "Dockerfile.gpu").read_text()
    assert '".[server,trainer,s3]"' in (ROOT / "Dockerfile").read_text()  # boto3: the S3 store
    assert "${DATASETS_DIR:-./data/real}:/datasets:ro" in SERVICES["worker"]["volumes"]


def test_env_file_is_ignored_by_git():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".env" in ignored and "!.env.example" in ignored
