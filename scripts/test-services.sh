#!/usr/bin/env bash
# The services the deployment tests (tests/deploy) need, for `make test` and CI:
#   - PostgreSQL: a throwaway cluster on 127.0.0.1 (a free port, a random password), run as a non-root OS user
#     (postgres refuses to run as root);
#   - headless Chromium, for the UI test;
#   - docker-compose (Debian's package; works offline), for the compose file's `config` check.
# Missing ones are installed from Debian's packages when this runs as root with apt-get (CI, dev boxes).
#
#   eval "$(scripts/test-services.sh start)"   # prints `export SAMANTICS_TEST_PG_URL=...` (and the others)
#   scripts/test-services.sh stop              # stops the cluster and deletes its data
#   scripts/test-services.sh start --no-install   # never apt-get (what the tests call when run on their own)
#
# Only `export` lines go to stdout; everything else goes to stderr. `start` does not fail when a service
# can't be had: the tests that need it skip with the reason (and fail when CI is set).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# One cluster per checkout, outside the checkout (the data dir must be reachable by the postgres user).
KEY=$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)
STATE=${SAMANTICS_TEST_SERVICES_DIR:-${TMPDIR:-/tmp}/samantics-test-services-$KEY}
PGDATA_DIR=$STATE/pgdata
PG_DB=samantics_test
PG_USER=samantics

say() { echo "test-services: $*" >&2; }

pg_bindir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"; return 0
    fi
    return 1
}

chromium_bin() {
    local c
    for c in chromium chromium-browser google-chrome; do
        if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
    done
    return 1
}

install_missing() {
    local pkgs=()
    pg_bindir >/dev/null || pkgs+=(postgresql)
    chromium_bin >/dev/null || pkgs+=(chromium fonts-dejavu-core)
    command -v docker-compose >/dev/null 2>&1 || pkgs+=(docker-compose)
    [ ${#pkgs[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        say "missing ${pkgs[*]}; install them (Debian: apt-get install ${pkgs[*]}) or the tests that need them skip"
        return 0
    fi
    say "installing ${pkgs[*]} from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || say "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2 || say "apt-get install ${pkgs[*]} failed"
}

# Run a command as the OS user that owns the cluster (root can't run postgres).
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$PG_OS_USER" -- "$@"
    else
        "$@"
    fi
}

pick_pg_os_user() {
    if [ "$(id -u)" -ne 0 ]; then
        PG_OS_USER=$(id -un)
    elif id postgres >/dev/null 2>&1; then
        PG_OS_USER=postgres
    else
        id samantics-pg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin samantics-pg
        PG_OS_USER=samantics-pg
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start_pg() {
    local bindir
    if ! bindir=$(pg_bindir); then
        say "PostgreSQL is not installed: the tests that need it skip"
        return 0
    fi
    pick_pg_os_user
    if [ -f "$STATE/url" ] && as_pg "$bindir/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
        say "PostgreSQL already running ($PGDATA_DIR)"
        echo "export SAMANTICS_TEST_PG_URL='$(cat "$STATE/url")'"
        return 0
    fi
    rm -rf "$STATE"
    mkdir -p "$STATE"
    chmod 700 "$STATE"
    local password port
    password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    port=$(free_port)
    mkdir -p "$PGDATA_DIR"
    printf '%s\n' "$password" > "$STATE/pwfile"
    if [ "$(id -u)" -eq 0 ]; then chown -R "$PG_OS_USER" "$STATE"; fi
    as_pg "$bindir/initdb" -D "$PGDATA_DIR" -U "$PG_USER" --pwfile="$STATE/pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --no-locale -E UTF8 >"$STATE/initdb.log" 2>&1 || {
        say "initdb failed: $(tail -5 "$STATE/initdb.log")"; return 0; }
    rm -f "$STATE/pwfile"
    # Loopback only, a socket in the data dir (not /var/run/postgresql), small and quick for tests.
    as_pg "$bindir/pg_ctl" -D "$PGDATA_DIR" -l "$STATE/postgres.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $PGDATA_DIR -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >&2 || { say "postgres did not start: $(tail -5 "$STATE/postgres.log")"; return 0; }
    as_pg "$bindir/createdb" -h "$PGDATA_DIR" -p "$port" -U "$PG_USER" "$PG_DB" >&2
    local url="postgresql://$PG_USER:$password@127.0.0.1:$port/$PG_DB"
    (umask 077; printf '%s' "$url" > "$STATE/url")
    say "PostgreSQL $(basename "$(dirname "$bindir")") on 127.0.0.1:$port as OS user $PG_OS_USER ($PGDATA_DIR)"
    echo "export SAMANTICS_TEST_PG_URL='$url'"
}

stop_pg() {
    local bindir
    bindir=$(pg_bindir) || return 0
    [ -d "$PGDATA_DIR" ] || return 0
    pick_pg_os_user
    as_pg "$bindir/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$STATE"
    say "PostgreSQL stopped and removed"
}

case "${1:-}" in
    start)
        [ "${2:-}" = "--no-install" ] || install_missing
        start_pg
        if c=$(chromium_bin); then echo "export SAMANTICS_TEST_CHROMIUM='$c'"; else say "no Chromium: the UI test skips"; fi
        ;;
    stop)
        stop_pg
        ;;
    *)
        echo "usage: $0 start [--no-install] | stop" >&2
        exit 2
        ;;
esac
