"""Static checks of the Docker deployment in docker/.

No container engine runs on the project's machines, so the Dockerfile and the compose file are
parsed and checked against what they deploy: the Airflow the project pins and installs, the
pyproject pins, the DVC config, the official Airflow compose layout. `docker compose config`
runs only where a compose plugin answers.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import importlib.util
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "docker-compose.yaml"
ENV_FILE = DOCKER / ".env"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERIGNORE = DOCKER / "Dockerfile.dockerignore"
DB_URL_SCRIPT = DOCKER / "db_url.py"

# The official Airflow 3 docker-compose layout (CeleryExecutor, PostgreSQL, Redis).
OFFICIAL_SERVICES = {
    "postgres",
    "redis",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
}
AIRFLOW_SERVICES = {name for name in OFFICIAL_SERVICES if name.startswith("airflow-")} | {
    "airflow-cli",
    "flower",
}
LONG_RUNNING = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "flower",
}
REQUIRED_SECRETS = {
    "POSTGRES_PASSWORD",
    "_AIRFLOW_WWW_USER_PASSWORD",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
}
OPTIONAL_SECRETS = {"ANTHROPIC_API_KEY", "AIRFLOW_CONN_VLCLIP_ALERTS"}
PROVIDERS = {
    "apache-airflow-providers-celery",
    "apache-airflow-providers-postgres",
    "apache-airflow-providers-apprise",
}
# With celery 5.7.0 the Celery provider's scheduler and worker crash (ENVIRONMENT.md).
CELERY_PIN = "celery[redis]==5.6.3"


# ---------------------------------------------------------------- parsing helpers


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuations joined, comments dropped as Docker does."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        command, _, arguments = (pending + line).partition(" ")
        instructions.append((command.upper(), arguments.strip()))
        pending = ""
    return instructions


def pip_install_tokens(arguments: str) -> list[str] | None:
    """The tokens after `pip install` in a RUN, or None when the RUN installs nothing."""
    tokens = shlex.split(arguments)
    for index in range(len(tokens) - 1):
        if tokens[index].endswith("pip") and tokens[index + 1] == "install":
            return tokens[index + 2 :]
    return None


def environment_of(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def env_file_paths(service: dict) -> list[Path]:
    entries = service.get("env_file") or []
    if isinstance(entries, str | dict):
        entries = [entries]
    paths = [entry["path"] if isinstance(entry, dict) else entry for entry in entries]
    return [(DOCKER / path).resolve() for path in paths]


def split_mount(spec: str) -> tuple[str, str, str]:
    source, target, *mode = spec.split(":")
    return source, target, mode[0] if mode else "rw"


def is_named_volume(source: str) -> bool:
    return not source.startswith((".", "/", "~", "$"))


def image_is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and any(c.isdigit() for c in tag)


SENSITIVE_NAME = re.compile(r"(?i)(password|passwd|secret|token|api_?key|fernet)")
ASSIGNMENT = re.compile(
    r"^\s*(?:-\s*)?(?:export\s+|ENV\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*[:=]\s*(.*)$"
)
LITERAL = re.compile(r"""^['"]?[^\s'"${}()<>\[\]]+['"]?$""")
TOKEN_PATTERNS = [
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"),  # Anthropic API key
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}"),  # Slack token
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),  # GitHub token
    re.compile(r"://[^/\s:@{}$<>]+:[^/\s@{}$<>]+@"),  # credentials inside a URL
]


def secret_findings(text: str, *, check_assignments: bool = True) -> list[str]:
    """Lines that look like a secret value: a known token shape, or a literal in a secret key."""
    findings = []
    for line in text.splitlines():
        if any(pattern.search(line) for pattern in TOKEN_PATTERNS):
            findings.append(line.strip())
            continue
        match = ASSIGNMENT.match(line) if check_assignments else None
        if match and SENSITIVE_NAME.search(match.group(1)):
            value = match.group(2).strip()
            if value and LITERAL.match(value) and value.strip("'\"") not in ("", "''"):
                findings.append(line.strip())
    return findings


def env_example_entries() -> tuple[dict[str, str], set[str]]:
    """(active KEY=value lines, keys documented in commented-out examples)."""
    active: dict[str, str] = {}
    commented: set[str] = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^\s*(#\s*)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if not match:
            continue
        if match.group(1):
            commented.add(match.group(2))
        else:
            active[match.group(2)] = match.group(3).strip()
    return active, commented


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def dockerfile_env(instructions) -> dict[str, str]:
    environment: dict[str, str] = {}
    for command, arguments in instructions:
        if command == "ENV":
            for token in shlex.split(arguments):
                key, _, value = token.partition("=")
                environment[key] = value
    return environment


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def pins(pyproject) -> dict[str, Requirement]:
    requirements = (Requirement(line) for line in pyproject["project"]["dependencies"])
    return {requirement.name.lower(): requirement for requirement in requirements}


def load_db_url():
    spec = importlib.util.spec_from_file_location("docker_db_url", DB_URL_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- compose layout


def test_compose_has_the_official_airflow_services(compose, services):
    assert set(services) >= OFFICIAL_SERVICES
    assert "x-airflow-common" in compose
    assert services["flower"]["profiles"] == ["flower"], "Flower stays off unless asked for"
    assert services["airflow-cli"]["profiles"] == ["debug"]


def test_airflow_services_run_celery_on_postgres_and_redis(compose, services):
    common = compose["x-airflow-common"]
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["image"] == common["image"], name
        assert service["build"] == common["build"], name
        environment = environment_of(service)
        assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert environment["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false", name
        assert environment["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379/"), name
        database = environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"]
        assert "db_url.py postgresql" in database, name
        assert "db_url.py db+postgresql" in environment["AIRFLOW__CELERY__RESULT_BACKEND_CMD"]
        assert environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith(
            "http://airflow-apiserver:8080/"
        ), name


def test_healthchecks_and_start_order(services):
    for name in {"postgres", "redis"} | LONG_RUNNING:
        assert services[name]["healthcheck"]["test"], f"{name} has no healthcheck"
    for name in AIRFLOW_SERVICES:
        depends_on = services[name]["depends_on"]
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        assert depends_on["redis"]["condition"] == "service_healthy", name
        if name in LONG_RUNNING:
            assert depends_on["airflow-init"]["condition"] == "service_completed_successfully"
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == (
        "service_healthy"
    )
    # Named user: root only where it must chown volumes, never a UI or worker.
    assert services["airflow-init"]["user"] == "0:0"
    assert all("user" not in services[name] for name in LONG_RUNNING)


def test_airflow_init_checks_secrets_then_hands_volumes_over(services):
    script = services["airflow-init"]["command"][1].replace("$$", "$")
    assert subprocess.run(["bash", "-n", "-c", script]).returncode == 0
    loop = re.search(r"for key in (.*?); do", script, re.S)
    assert set(loop.group(1).replace("\\", " ").split()) == REQUIRED_SECRETS
    # chown and exec only report here: this machine is not the container.
    stubbed = 'chown() { echo "chown $*" >&2; }\nexec() { echo "exec $*" >&2; }\n' + script
    base = {key: value for key, value in os.environ.items() if key not in REQUIRED_SECRETS}

    def run(environment: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-c", stubbed], env=environment, capture_output=True, text=True, timeout=10
        )

    result = run(base)
    assert result.returncode == 1
    assert all(key in result.stderr for key in REQUIRED_SECRETS), result.stderr
    assert "chown" not in result.stderr, "must stop before touching anything"

    result = run({**base, **dict.fromkeys(REQUIRED_SECRETS, "example")})
    assert result.returncode == 0, result.stderr
    assert "exec /entrypoint airflow version" in result.stderr


# ---------------------------------------------------------------- images and versions


def test_every_image_is_pinned(services, instructions):
    images = {service["image"] for service in services.values()}
    images |= {arguments.split()[0] for command, arguments in instructions if command == "FROM"}
    unpinned = sorted(image for image in images if not image_is_pinned(image))
    assert not unpinned, f"pin a version tag (never latest): {unpinned}"


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("postgres:16-bookworm", True),
        ("apache/airflow:3.3.2-python3.11", True),
        ("redis@sha256:" + "0" * 64, True),
        ("postgres", False),
        ("redis:latest", False),
        ("localhost:5000/redis", False),
    ],
)
def test_image_pin_rule(image, pinned):
    assert image_is_pinned(image) is pinned


def test_airflow_base_image_is_the_pinned_and_installed_airflow(instructions, pyproject, pins):
    (base,) = [arguments.split()[0] for command, arguments in instructions if command == "FROM"]
    match = re.fullmatch(r"apache/airflow:(\d+\.\d+\.\d+)-python(\d+\.\d+)", base)
    assert match, f"base image {base!r} is not an exact apache/airflow:X.Y.Z-pythonA.B tag"
    airflow_version, python_version = match.groups()
    assert airflow_version == importlib.metadata.version("apache-airflow")
    assert pins["apache-airflow"].specifier.contains(airflow_version)
    assert SpecifierSet(pyproject["project"]["requires-python"]).contains(python_version)


def test_built_image_is_tagged_with_the_package_version(compose, pyproject):
    assert (
        compose["x-airflow-common"]["image"] == f"vlclip-airflow:{pyproject['project']['version']}"
    )


# ---------------------------------------------------------------- Dockerfile


def test_pip_installs_run_as_the_non_root_airflow_user(instructions):
    user = "root"  # assume the worst until the Dockerfile says otherwise
    installs = 0
    for command, arguments in instructions:
        if command == "USER":
            user = arguments.split(":")[0]
        elif command == "RUN" and pip_install_tokens(arguments) is not None:
            installs += 1
            assert user not in ("root", "0"), f"pip install as {user}: {arguments[:60]}"
    assert installs >= 2
    assert user == "airflow", "the image must end as the non-root airflow user"


def test_dockerfile_installs_the_package_providers_and_pins(instructions, pins):
    runs = [arguments for command, arguments in instructions if command == "RUN"]
    installs = [tokens for tokens in map(pip_install_tokens, runs) if tokens is not None]
    requested = {token for tokens in installs for token in tokens}
    assert requested >= PROVIDERS
    assert CELERY_PIN in requested
    assert "apache-airflow==${AIRFLOW_VERSION}" in requested, "keeps pip from moving Airflow"
    assert any(tokens[-2:] == ["-e", "."] for tokens in installs), "installs the repository"
    for name in ("torch", "torchvision"):
        (pin,) = [token for token in requested if token.startswith(f"{name}==")]
        assert Requirement(pin).specifier == pins[name].specifier, f"{pin} != pyproject"
    (torch_install,) = [
        tokens for tokens in installs if any(t.startswith("torch==") for t in tokens)
    ]
    index = torch_install[torch_install.index("--index-url") + 1]
    assert index == "https://download.pytorch.org/whl/cpu"


def test_build_context_is_the_repository_root_and_filtered(compose, instructions):
    build = compose["x-airflow-common"]["build"]
    context = (DOCKER / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    needed = {".git", ".venv", "data", "models", "reports", ".dvc/cache", "docker/.env"}
    assert needed <= patterns, f"missing from {DOCKERIGNORE.name}: {needed - patterns}"
    for command, arguments in instructions:
        if command == "COPY":
            sources = [token for token in shlex.split(arguments) if not token.startswith("--")]
            for source in sources[:-1]:
                assert (REPO / source).exists(), f"COPY {source}: not in the build context"
                assert source not in patterns, f"COPY {source}: excluded by {DOCKERIGNORE.name}"


# ---------------------------------------------------------------- volumes


def test_volumes_keep_dags_dvc_reports_monitoring_and_logs(compose, instructions, dockerfile_env):
    mounts = [split_mount(spec) for spec in compose["x-airflow-common"]["volumes"]]
    targets = {target: (source, mode) for source, target, mode in mounts}

    dags_folder = dockerfile_env["AIRFLOW__CORE__DAGS_FOLDER"]
    source, mode = targets[dags_folder]
    assert (DOCKER / source).resolve() == REPO / "dags"
    assert mode == "ro"

    workspace = [arguments for command, arguments in instructions if command == "WORKDIR"][-1]
    assert dockerfile_env["VLCLIP_WORKSPACE"] == workspace
    assert posixpath.dirname(dags_folder) == workspace, "DAGs find dvc.yaml one folder up"

    dvc_config = configparser.ConfigParser()
    dvc_config.read(REPO / ".dvc" / "config")
    # DVC writes section names both as [remote "x"] and ['remote "x"'].
    sections = {name.strip("'"): dvc_config[name] for name in dvc_config.sections()}
    remote = sections["core"]["remote"]
    remote_url = sections[f'remote "{remote}"']["url"]
    remote_target = posixpath.normpath(posixpath.join(workspace, ".dvc", remote_url))

    persistent = {
        "/opt/airflow/logs",
        f"{workspace}/.dvc/cache",
        remote_target,
        f"{workspace}/reports",
        f"{workspace}/monitoring",
    }
    declared = set(compose["volumes"])
    for target in persistent:
        assert target in targets, f"{target} is not mounted"
        source, _ = targets[target]
        assert is_named_volume(source) and source in declared, f"{target}: {source}"

    # Named volumes copy the image folder (owner included) when created: the Dockerfile must
    # create each one as airflow, and airflow-init must hand older, root-owned ones over.
    (mkdir,) = [arguments for command, arguments in instructions if "mkdir -p" in arguments]
    tokens = shlex.split(mkdir)
    created = tokens[tokens.index("-p") + 1 : tokens.index("&&")]
    created = {posixpath.normpath(posixpath.join(workspace, path)) for path in created}
    init_script = compose["services"]["airflow-init"]["command"][1]
    for source, target, _ in mounts:
        if is_named_volume(source):
            assert target == "/opt/airflow/logs" or target in created, f"mkdir {target}"
            assert target in init_script, f"airflow-init does not chown {target}"


# ---------------------------------------------------------------- secrets


def test_secrets_come_only_from_docker_env(services):
    for name in AIRFLOW_SERVICES | {"postgres"}:
        assert ENV_FILE in env_file_paths(services[name]), f"{name} does not read docker/.env"
    for name, service in services.items():
        leaked = (REQUIRED_SECRETS | OPTIONAL_SECRETS) & set(environment_of(service))
        assert not leaked, f"{name} sets {leaked} in the compose file, not in docker/.env"


def test_env_example_documents_every_secret_without_a_value():
    active, commented = env_example_entries()
    documented = set(active) | commented
    missing = (REQUIRED_SECRETS | OPTIONAL_SECRETS) - documented
    assert not missing, f"document {missing} in {ENV_EXAMPLE.name}"
    for key in REQUIRED_SECRETS | OPTIONAL_SECRETS:
        assert active.get(key, "") == "", f"{key} has a value in {ENV_EXAMPLE.name}"


def test_no_secret_values_in_tracked_docker_files():
    files = sorted(path for path in DOCKER.rglob("*") if path.is_file())
    relative = "\n".join(str(path.relative_to(REPO)) for path in files)
    ignored = subprocess.run(
        ["git", "check-ignore", "--stdin"], cwd=REPO, input=relative, capture_output=True, text=True
    ).stdout.split()
    scanned = [path for path in files if str(path.relative_to(REPO)) not in ignored]
    assert ENV_FILE not in scanned
    assert {DOCKERFILE, COMPOSE, ENV_EXAMPLE} <= set(scanned)
    for path in scanned:
        # In Python, `password = env.get(...)` is code, not a value: only token shapes count.
        findings = secret_findings(path.read_text(), check_assignments=path.suffix != ".py")
        assert not findings, f"{path.name}: {findings}"


@pytest.mark.parametrize(
    "line",
    [
        "password: hunter2",
        "POSTGRES_PASSWORD=airflow",
        "ANTHROPIC_API_KEY=sk-ant-api03-abcdefghijklmnop",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN: postgresql://airflow:airflow@postgres/airflow",
        "  - AIRFLOW__API_AUTH__JWT_SECRET='c2VjcmV0'",
    ],
)
def test_secret_scan_flags_literal_secrets(line):
    assert secret_findings(line)


@pytest.mark.parametrize(
    "line",
    [
        "POSTGRES_PASSWORD=",
        "password: ${POSTGRES_PASSWORD}",
        "_AIRFLOW_WWW_USER_PASSWORD: ${_AIRFLOW_WWW_USER_PASSWORD:?set it in docker/.env}",
        '# AIRFLOW_CONN_X=\'{"path": "slack://<token-a>/<token-b>/#<channel>"}\'',
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD: python /opt/vlclip/docker/db_url.py postgresql",
    ],
)
def test_secret_scan_passes_references_and_placeholders(line):
    assert not secret_findings(line)


def test_docker_env_is_git_ignored_and_the_example_is_not():
    def ignored(path: Path) -> bool:
        relative = str(path.relative_to(REPO))
        return subprocess.run(["git", "check-ignore", "-q", relative], cwd=REPO).returncode == 0

    assert ignored(ENV_FILE)
    assert not ignored(ENV_EXAMPLE)


# ---------------------------------------------------------------- database URL command


def test_db_url_quotes_the_password_once_for_every_url():
    db_url = load_db_url()
    environment = {"POSTGRES_PASSWORD": "p@ss:w/rd%"}
    url = db_url.database_url("postgresql+psycopg2", environment)
    assert url == "postgresql+psycopg2://airflow:p%40ss%3Aw%2Frd%25@postgres:5432/airflow"
    from sqlalchemy.engine import make_url

    assert make_url(url).password == "p@ss:w/rd%"
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        db_url.database_url("postgresql+psycopg2", {"POSTGRES_PASSWORD": ""})


@pytest.mark.parametrize(
    ("key", "scheme"),
    [
        ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD", "postgresql+psycopg2"),
        ("AIRFLOW__CELERY__RESULT_BACKEND_CMD", "db+postgresql"),
    ],
)
def test_db_url_commands_run_as_airflow_runs_them(services, key, scheme):
    """Airflow runs a *_CMD value with shlex.split and takes stdout as the value, verbatim."""
    environment = environment_of(services["airflow-scheduler"])
    command = shlex.split(environment[key].replace("/opt/vlclip/docker/", f"{DOCKER}/"))
    command[0] = sys.executable if command[0] == "python" else command[0]
    run_environment = {
        **{name: value for name, value in environment.items() if name.startswith("POSTGRES_")},
        "POSTGRES_PASSWORD": "example",
    }
    result = subprocess.run(command, env=run_environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{scheme}://airflow:example@postgres:5432/airflow"
    result = subprocess.run(command, env={}, capture_output=True, text=True)
    assert result.returncode == 1 and "POSTGRES_PASSWORD" in result.stderr


# ---------------------------------------------------------------- with a container engine


def test_docker_compose_config_accepts_the_file(tmp_path):
    docker = shutil.which("docker")
    version = (
        subprocess.run([docker, "compose", "version"], capture_output=True) if docker else None
    )
    if version is None or version.returncode != 0:
        pytest.skip("not applicable: no `docker compose` here; the static checks above ran")
    (tmp_path / "dags").mkdir()
    copy = tmp_path / "docker"
    copy.mkdir()
    for path in (COMPOSE, DOCKERFILE, DB_URL_SCRIPT):
        shutil.copy(path, copy / path.name)
    example = ENV_EXAMPLE.read_text()
    (copy / ".env").write_text(re.sub(r"(?m)^([A-Z_]+)=$", r"\1=placeholder", example))
    result = subprocess.run(
        [docker, "compose", "-f", str(copy / COMPOSE.name), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
