"""Static checks of the Docker Compose setup (no Docker needed): docker-compose.yaml, Dockerfile,
.dockerignore, .env.example and docker/, against the code and the example DAG they configure."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from airflow_provider_omnisend.hooks.omnisend import OmnisendConnSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DAG_FILE = ROOT / "dags" / "omnisend_segment_export.py"

LONG_RUNNING = ("postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                "airflow-triggerer", "airflow-worker", "omnisend-emulator")
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker", "airflow-init")
#: Used by Compose on the host only (a bind-mount source), never inside a container.
HOST_ONLY = {"OMNISEND_LAKE_DIR"}
ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
OMNISEND_NAME = re.compile(r"\bOMNISEND_[A-Z0-9_]+\b")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def parse_env(text: str) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and # comments skipped; anything else is an error."""
    env: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = ENV_LINE.match(line)
        assert m, f".env.example line {n} is not KEY=VALUE: {raw!r}"
        assert m.group(1) not in env, f".env.example sets {m.group(1)} twice"
        env[m.group(1)] = m.group(2)
    return env


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return parse_env(ENV_EXAMPLE.read_text())


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def health_command(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(test)


# ---------------------------------------------------------------- docker-compose.yaml
def test_expected_services_and_healthchecks(services: dict):
    assert set(services) >= {*LONG_RUNNING, "airflow-init"}
    for name in LONG_RUNNING:
        assert health_command(services[name]).split()[0] in {"CMD", "CMD-SHELL"}, name
    assert "pg_isready" in health_command(services["postgres"])
    assert "redis-cli ping" in health_command(services["redis"])
    assert "localhost:8080/api/v2/version" in health_command(services["airflow-apiserver"])
    assert "localhost:8974/health" in health_command(services["airflow-scheduler"])
    assert "--job-type DagProcessorJob" in health_command(services["airflow-dag-processor"])
    assert "--job-type TriggererJob" in health_command(services["airflow-triggerer"])
    assert "inspect ping" in health_command(services["airflow-worker"])
    assert "localhost:8999/_emulator/health" in health_command(services["omnisend-emulator"])


def test_airflow_services_share_the_common_block(compose: dict, services: dict):
    common = compose["x-airflow-common"]
    env = common["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "@postgres/" in env["AIRFLOW__CELERY__RESULT_BACKEND"]
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://") and "@redis:6379" in env[
        "AIRFLOW__CELERY__BROKER_URL"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
    assert "${AIRFLOW__API_AUTH__JWT_SECRET" in env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"  # the scheduler's healthcheck needs it
    assert common["env_file"] == [".env"]
    mounts = {v.split(":")[-1]: v for v in common["volumes"]}
    assert mounts["/opt/airflow/dags"] == "./dags:/opt/airflow/dags"
    assert mounts["/opt/airflow/lake"] == "${OMNISEND_LAKE_DIR:-./lake}:/opt/airflow/lake"
    assert mounts["/opt/airflow/omnisend_state"] == "./state:/opt/airflow/omnisend_state"
    assert "/opt/airflow/logs" in mounts
    for name in AIRFLOW_SERVICES:
        svc = services[name]
        # The YAML merge key copied the anchor: same image, build, env file and mounts everywhere.
        assert svc["build"] == common["build"] and svc["image"] == common["image"], name
        assert svc["volumes"] == common["volumes"], name
        assert svc["environment"]["AIRFLOW__API_AUTH__JWT_SECRET"] == env["AIRFLOW__API_AUTH__JWT_SECRET"]


def test_commands_and_dependencies(services: dict):
    assert services["airflow-apiserver"]["command"] == "api-server"
    assert "8080:8080" in services["airflow-apiserver"]["ports"]
    assert services["airflow-scheduler"]["command"] == "scheduler"
    assert services["airflow-dag-processor"]["command"] == "dag-processor"
    assert services["airflow-triggerer"]["command"] == "triggerer"
    assert services["airflow-worker"]["command"] == "celery worker"
    for name in AIRFLOW_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["postgres"] == {"condition": "service_healthy"}, name
        assert deps["redis"] == {"condition": "service_healthy"}, name
        if name != "airflow-init":
            assert deps["airflow-init"] == {"condition": "service_completed_successfully"}, name
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}


def test_worker_can_be_scaled(services: dict):
    worker = services["airflow-worker"]
    # A fixed name or host port would make `--scale airflow-worker=N` fail.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["deploy"]["replicas"] == "${AIRFLOW_WORKERS:-1}"


def test_init_creates_pool_with_configured_slots(services: dict):
    init = services["airflow-init"]
    assert init["user"] == "0:0"
    assert init["environment"]["OMNISEND_POOL_SLOTS"] == "${OMNISEND_POOL_SLOTS:-2}"
    script_path = init["command"][-1]
    prefix = "/opt/airflow/omnisend-provider/"
    assert script_path.startswith(prefix)
    script = (ROOT / script_path.removeprefix(prefix)).read_text()
    assert "airflow db migrate" in script
    assert re.search(r'airflow pools set omnisend_api "\$\{pool_slots\}"', script)
    assert 'pool_slots="${OMNISEND_POOL_SLOTS:-2}"' in script
    assert "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in script


def test_init_writes_a_known_ui_login_and_keeps_other_users(tmp_path: Path):
    script = (ROOT / "docker" / "airflow-init.sh").read_text()
    python_part = re.search(r"<<'PY'\n(.*?)\nPY\n", script, re.S)
    assert python_part, "the password step is a python heredoc"
    passwords = tmp_path / "auth" / "passwords.json"
    passwords.parent.mkdir()
    passwords.write_text('{"someone": "kept"}')
    env = {"PATH": os.environ["PATH"], "_AIRFLOW_WWW_USER_USERNAME": "ops",
           "_AIRFLOW_WWW_USER_PASSWORD": 'p"w'}
    subprocess.run([sys.executable, "-", str(passwords)], input=python_part.group(1), text=True, env=env,
                   check=True, capture_output=True)
    assert json.loads(passwords.read_text()) == {"someone": "kept", "ops": 'p"w'}
    assert passwords.stat().st_mode & 0o077 == 0  # not readable by others


def test_init_script_is_valid_bash():
    script = ROOT / "docker" / "airflow-init.sh"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_the_dag_uses_the_pool_init_creates(env: dict[str, str]):
    """A task in a pool that does not exist never runs: .env names the very pool airflow-init creates."""
    script = (ROOT / "docker" / "airflow-init.sh").read_text()
    assert f"airflow pools set {env['OMNISEND_POOL']} " in script
    assert re.search(r"""setting\(["']OMNISEND_POOL["']""", DAG_FILE.read_text())


def test_emulator_is_opt_in_and_runs_the_existing_module(services: dict, compose: dict):
    emulator = services["omnisend-emulator"]
    assert emulator["profiles"] == ["emulator"]
    # Only the emulator sits in a profile: everything else starts with a plain `docker compose up`.
    assert [n for n, s in services.items() if "profiles" in s] == ["omnisend-emulator"]
    assert emulator["image"] == compose["x-airflow-common"]["image"]
    command = emulator["command"]
    assert command[:2] == ["python", "-m"]
    module = command[2]
    assert (ROOT / Path(*module.split(".")) / "__main__.py").is_file(), module
    assert module == "airflow_provider_omnisend.testing.emulator"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "8999"
    from airflow_provider_omnisend.testing.emulator.__main__ import parse_args

    args = parse_args(command[3:])  # the arguments the real CLI accepts
    assert (args.host, args.port) == ("0.0.0.0", 8999)


def test_image_is_built_from_the_dockerfile(compose: dict):
    build = compose["x-airflow-common"]["build"]
    context = build if isinstance(build, str) else build["context"]
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context / dockerfile).resolve() == DOCKERFILE


# ---------------------------------------------------------------- Dockerfile
def test_dockerfile_extends_airflow_33_and_installs_this_package():
    steps = dockerfile_instructions()
    froms = [args for word, args in steps if word == "FROM"]
    assert len(froms) == 1 and re.fullmatch(r"apache/airflow:3\.3\.\d+(-python3\.\d+)?", froms[0])
    pins = re.findall(r"^apache-airflow==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert froms[0].split(":")[1].split("-")[0] == pins[0]  # constraints pin the image's Airflow
    runs = [args for word, args in steps if word == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert len(installs) == 1
    # the emulator extra: the compose file's opt-in emulator service runs from this image; the redis
    # extra: the brand-wide limiter's client, which .env.example's connection uses (redis_url)
    install = r"""pip install --no-cache-dir -c constraints\.txt "\.\[azure,delta,emulator,redis\]\""""
    assert re.search(install, installs[0])
    assert "import airflow_provider_omnisend.testing.emulator.app, redis" in installs[0]
    # pip runs as the airflow user (the official image's rule), after the sources are copied.
    users = [(i, args) for i, (word, args) in enumerate(steps) if word == "USER"]
    install_at = steps.index(("RUN", installs[0]))
    assert [a for i, a in users if i < install_at][-1] == "airflow"
    copied = set()
    for i, (word, args) in enumerate(steps):
        if word == "COPY" and i < install_at:
            copied.update(a.rstrip("/") for a in args.split()[:-1] if not a.startswith("--"))
    assert copied >= {"pyproject.toml", "constraints.txt", "README.md", "airflow_provider_omnisend"}


def test_dockerfile_copies_only_files_that_exist_and_are_not_ignored():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv", "node_modules", ".git", "tests", "benchmarks/results", ".env"} <= ignored
    for word, args in dockerfile_instructions():
        if word != "COPY":
            continue
        for src in (a.rstrip("/") for a in args.split()[:-1] if not a.startswith("--")):
            assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
            assert src not in ignored, f"Dockerfile copies {src}, which .dockerignore leaves out"


# ---------------------------------------------------------------- .env.example
def test_env_example_parses_and_holds_the_required_keys(env: dict[str, str]):
    assert env["AIRFLOW_UID"] == "50000"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert env["OMNISEND_POOL_SLOTS"].isdigit() and int(env["OMNISEND_POOL_SLOTS"]) >= 1
    assert env["OMNISEND_DEFERRABLE"] == "true"
    assert env["OMNISEND_LAKE_CONN_ID"] == ""
    assert json.loads(env["OMNISEND_SEGMENTS"]) == ["HighValueCustomers", "NewsletterFans"]
    assert env["OMNISEND_LAKE_PATH"].startswith("file:///opt/airflow/lake/")  # inside the lake mount
    assert env["OMNISEND_STATE_PATH"] == "/opt/airflow/omnisend_state"  # the state mount
    assert isinstance(json.loads(env["OMNISEND_MAPPING"])["email"], str)


def _conn_settings(value: str) -> OmnisendConnSettings:
    from airflow.models.connection import Connection

    conn = Connection.from_json(value, conn_id="omnisend_default")
    assert conn.conn_type == "omnisend"
    return OmnisendConnSettings.from_connection(conn)


def test_env_example_connection_points_at_the_emulator_service(env: dict[str, str], services: dict):
    raw = json.loads(env["AIRFLOW_CONN_OMNISEND_DEFAULT"])
    assert raw["conn_type"] == "omnisend"
    settings = _conn_settings(env["AIRFLOW_CONN_OMNISEND_DEFAULT"])
    assert settings.base_url.startswith("http://omnisend-emulator:8999/api")
    assert settings.privacy_acknowledged is True
    assert settings.requests_per_minute == 300
    assert "8999:8999" in services["omnisend-emulator"]["ports"]
    assert env["OMNISEND_CONN_ID"] == "omnisend_default"  # the connection the variable above defines


def test_env_example_documents_the_production_connection():
    commented = [line.removeprefix("#").strip() for line in ENV_EXAMPLE.read_text().splitlines()
                 if line.startswith("#") and "AIRFLOW_CONN_OMNISEND_DEFAULT=" in line]
    assert len(commented) == 1
    settings = _conn_settings(commented[0].split("=", 1)[1])
    assert settings.base_url.startswith("https://api.omnisend.com/api")


def test_compose_parses_every_env_example_value_as_written(env: dict[str, str]):
    # Compose strips an unquoted value at " #" and interpolates "$": neither may occur in our values.
    for key, value in env.items():
        assert " #" not in value and "$" not in value, key
        assert not value.startswith(("'", '"')), f"{key}: quoted values read differently in Compose"


# ---------------------------------------------------------------- OMNISEND_* names vs the DAG
def names_the_dag_reads() -> set[str]:
    if not DAG_FILE.exists():
        pytest.skip(f"{DAG_FILE.relative_to(ROOT)} is not written yet (the example DAG reads these names)")
    # Names passed as string literals, e.g. setting("OMNISEND_LAKE_PATH", ...) or os.environ["..."].
    return set(re.findall(r"""["'](OMNISEND_[A-Z0-9_]+)["']""", DAG_FILE.read_text()))


def test_every_omnisend_name_in_env_and_compose_is_read_by_the_dag(env: dict[str, str]):
    read = names_the_dag_reads()
    assert read, "found no OMNISEND_* string in the DAG"
    in_env = {k for k in env if k.startswith("OMNISEND_")}
    in_compose = set(OMNISEND_NAME.findall(COMPOSE.read_text()))
    assert in_env - read == set(), "set in .env.example but never read by the DAG"
    assert in_compose - HOST_ONLY - read == set(), "used in docker-compose.yaml but never read by the DAG"


def test_every_omnisend_name_the_dag_reads_is_in_env_example(env: dict[str, str]):
    missing = names_the_dag_reads() - set(env)
    assert missing == set(), "read by the DAG but missing from .env.example"


def test_host_only_names_stay_on_the_host(compose: dict, env: dict[str, str]):
    # OMNISEND_LAKE_DIR is the one OMNISEND_* name the DAG does not read: it may only pick the mount source.
    text = COMPOSE.read_text()
    for name in HOST_ONLY:
        uses = re.findall(r"\$\{" + name + r"[^}]*\}[^\s]*", text)
        assert uses and all(u.endswith(":/opt/airflow/lake") for u in uses), uses
        assert name not in env  # documented (commented out) in .env.example, not passed to containers
        assert f"# {name}=" in ENV_EXAMPLE.read_text()


# ---------------------------------------------------------------- docker/demo_lake.py
def test_demo_lake_writes_what_the_env_example_points_at(tmp_path: Path, env: dict[str, str]):
    import importlib.util

    from airflow_provider_omnisend.lake import resolve_export

    spec = importlib.util.spec_from_file_location("demo_lake", ROOT / "docker" / "demo_lake.py")
    assert spec and spec.loader
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    assert demo.main([str(tmp_path), "--rows", "40"]) == 0
    # OMNISEND_LAKE_PATH, with the container's lake mount replaced by tmp_path.
    source = env["OMNISEND_LAKE_PATH"].replace("file:///opt/airflow/lake", tmp_path.as_uri())
    for segment in json.loads(env["OMNISEND_SEGMENTS"]):
        export = resolve_export(source, segment=segment)
        assert export.entity == segment and export.files
        assert "EmailAddress" in export.columns
    assert demo.write_demo_lake(tmp_path, rows=40) is None  # an existing export is left alone
    assert demo.write_demo_lake(tmp_path, rows=40, force=True) is not None
