"""Print the Airflow metadata database URL, built from the POSTGRES_* environment variables.

docker-compose.yaml points AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD and
AIRFLOW__CELERY__RESULT_BACKEND_CMD at this script, so the PostgreSQL password is written once,
in docker/.env, for both the postgres container and Airflow; it is percent-encoded here, so a
password with '@', ':' or '/' cannot break the URL. Standard library only, so any Python in the
containers runs it (airflow-init runs as root).

    python docker/db_url.py postgresql+psycopg2   # [database] sql_alchemy_conn
    python docker/db_url.py db+postgresql         # [celery] result_backend
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from urllib.parse import quote


def database_url(scheme: str, env: Mapping[str, str]) -> str:
    password = env.get("POSTGRES_PASSWORD", "")
    if not password:
        raise ValueError("POSTGRES_PASSWORD is empty: set it in docker/.env")
    user = quote(env.get("POSTGRES_USER", "airflow"), safe="")
    host = env.get("POSTGRES_HOST", "postgres")
    port = env.get("POSTGRES_PORT", "5432")
    database = quote(env.get("POSTGRES_DB", "airflow"), safe="")
    return f"{scheme}://{user}:{quote(password, safe='')}@{host}:{port}/{database}"


def main(argv: list[str]) -> int:
    scheme = argv[0] if argv else "postgresql+psycopg2"
    try:
        url = database_url(scheme, os.environ)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 1
    # No newline: Airflow takes a _CMD's stdout as the value, byte for byte.
    sys.stdout.write(url)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
