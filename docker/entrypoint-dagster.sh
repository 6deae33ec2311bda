#!/bin/sh
# Entry point of the webserver/daemon image: waits for Postgres, then runs the given command
# (docker-compose.yml: `dagster-webserver ...` or `dagster-daemon run ...`).
set -eu

for var in DAGSTER_POSTGRES_USER DAGSTER_POSTGRES_PASSWORD DAGSTER_POSTGRES_HOST DAGSTER_POSTGRES_PORT DAGSTER_POSTGRES_DB; do
    eval "value=\${$var:-}"
    if [ -z "$value" ]; then
        echo "entrypoint: $var is not set (see .env.example)" >&2
        exit 2
    fi
done

# compose's depends_on waits for the health check already; this covers `docker run` and restarts.
# The password goes through the environment, never the command line or the log.
python - <<'PY'
import os, sys, time
import psycopg2

deadline = time.monotonic() + float(os.environ.get("DAGSTER_POSTGRES_WAIT_SECONDS", "60"))
while True:
    try:
        psycopg2.connect(host=os.environ["DAGSTER_POSTGRES_HOST"], port=os.environ["DAGSTER_POSTGRES_PORT"],
                         user=os.environ["DAGSTER_POSTGRES_USER"], password=os.environ["DAGSTER_POSTGRES_PASSWORD"],
                         dbname=os.environ["DAGSTER_POSTGRES_DB"], connect_timeout=5).close()
        break
    except psycopg2.OperationalError as exc:
        if time.monotonic() > deadline:
            sys.exit(f"entrypoint: Postgres at {os.environ['DAGSTER_POSTGRES_HOST']}:{os.environ['DAGSTER_POSTGRES_PORT']} "
                     f"is not answering: {str(exc).strip().splitlines()[0]}")
        time.sleep(2)
PY

if [ "$#" -eq 0 ]; then
    echo "entrypoint: give a command: dagster-webserver ... or dagster-daemon run ..." >&2
    exit 2
fi
# The daemon launches the runs: create the pools' rows before it starts (see init-pools.py for the race).
case "$1" in
    dagster-daemon) python "$(dirname "$0")/init-pools.py" ;;
esac
exec "$@"
