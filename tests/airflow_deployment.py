"""A real Airflow deployment for tests: metadata on PostgreSQL, CeleryExecutor with Redis as
broker, and the five processes production runs (api-server, scheduler, dag-processor,
triggerer, one Celery worker), all on 127.0.0.1 with a fresh database and Redis db per use.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from helpers import command_env, free_port, run_command

POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
PROCESSES = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--port", "{port}"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer"],
    "celery-worker": ["celery", "worker", "--concurrency", "1"],
}
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def reachable(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=2):
            return True
    except OSError:
        return False


def missing_services() -> str | None:
    """Why the deployment cannot start here, or None when PostgreSQL and Redis answer."""
    down = [f"{name} on {host}:{port}" for name, (host, port) in
            {"PostgreSQL": POSTGRES, "Redis": REDIS}.items() if not reachable((host, port))]
    return ("not reachable: " + ", ".join(down)) if down else None


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new PostgreSQL database (trust auth on 127.0.0.1), dropped afterwards."""
    import psycopg2

    name = f"vlclip_test_{secrets.token_hex(4)}"
    admin = psycopg2.connect(host=POSTGRES[0], port=POSTGRES[1], user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextmanager
def fresh_redis_db() -> Iterator[int]:
    """A Redis database number that is empty now, flushed afterwards."""
    import redis

    for number in secrets.SystemRandom().sample(range(1, 16), 15):
        client = redis.Redis(host=REDIS[0], port=REDIS[1], db=number)
        if client.dbsize() == 0:
            break
    else:
        raise RuntimeError("no empty Redis database among 1..15")
    try:
        yield number
    finally:
        client.flushdb()
        client.close()


@dataclass
class Deployment:
    """A running deployment: its URL, environment, logs and a logged-in REST client."""

    url: str
    env: dict[str, str]
    home: Path
    password: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    client: httpx.Client | None = None

    def log(self, name: str) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)[-chars:]}" for name in self.processes)

    def login(self) -> httpx.Client:
        token = httpx.post(
            f"{self.url}/auth/token", json={"username": "admin", "password": self.password}
        )
        token.raise_for_status()
        self.client = httpx.Client(
            base_url=f"{self.url}/api/v2",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=30,
        )
        return self.client

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.client.get(f"/dags/{dag_id}")
            if response.status_code == 200:
                return response.json()
            time.sleep(2)
        raise AssertionError(f"{dag_id} never parsed\n{self.logs_tail()}")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 1500) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.client.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()
            if run["state"] in ("success", "failed"):
                return run
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited\n{self.logs_tail()}")
            time.sleep(3)
        raise AssertionError(f"{run_id} did not finish in {timeout} s\n{self.logs_tail()}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        listed = self.client.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()
        return {ti["task_id"]: ti["state"] for ti in listed["task_instances"]}


def _wait_healthy(url: str, processes: dict[str, subprocess.Popen], home: Path) -> None:
    deadline = time.monotonic() + 120
    last = None
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                log = (home / f"{name}.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"airflow {name} exited with {process.returncode}:\n{log}")
        try:
            last = httpx.get(f"{url}/api/v2/monitor/health", timeout=5).json()
            if all(part.get("status") == "healthy" for part in last.values()):
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"Airflow not healthy after 120 s: {last}")


def _stop(processes: dict[str, subprocess.Popen]) -> None:
    for process in processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def celery_deployment(home: Path, repo: Path, extra_env: dict[str, str]) -> Iterator[Deployment]:
    """Start the deployment with ``repo``'s DAGs; stop it and drop its state afterwards."""
    with fresh_database() as database, fresh_redis_db() as redis_db:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        password = secrets.token_urlsafe(12)
        passwords = home / "passwords.json"
        passwords.write_text(json.dumps({"admin": password}))
        env = {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS[0]}:{REDIS[1]}/{redis_db}",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database.replace("+psycopg2", ""),
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "VLCLIP_REPO": str(repo),
            "VLCLIP_RUNS_DIR": str(home / "runs"),
            **extra_env,
        }
        run_command([AIRFLOW, "db", "migrate"], repo, timeout=300, **env)
        run_command([AIRFLOW, "pools", "set", "vlclip_dvc", "1", "DVC lock"], repo, **env)
        deployment = Deployment(url=url, env=env, home=home, password=password)
        try:
            for name, args in PROCESSES.items():
                with (home / f"{name}.log").open("w") as log:
                    deployment.processes[name] = subprocess.Popen(
                        [AIRFLOW, *(arg.format(port=port) for arg in args)],
                        cwd=repo,
                        env=command_env(**env),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
            _wait_healthy(url, deployment.processes, home)
            deployment.login()
            yield deployment
        finally:
            if deployment.client is not None:
                deployment.client.close()
            _stop(deployment.processes)
