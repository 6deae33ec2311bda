#!/bin/sh
# Entry point of the user-code image.
#   no arguments: the code location's gRPC server (docker-compose's `user-code` service);
#   arguments:    run them (DockerRunLauncher starts each run container with `dagster api execute_run ...`).
set -eu

for var in DATASET_DIR GRABBY_WORKDIR MODEL_CACHE DAGSTER_HOME; do
    eval "value=\${$var:-}"
    if [ -z "$value" ]; then
        echo "entrypoint: $var is not set (see .env.example)" >&2
        exit 2
    fi
done
# The workdir and the model cache are read-only mounts; say so early if they are missing, but don't fail:
# a code server without them still serves the definitions (the runs fail with the reason).
for dir in "$GRABBY_WORKDIR" "$MODEL_CACHE"; do
    [ -d "$dir" ] || echo "entrypoint: warning: $dir is not mounted" >&2
done

if [ "$#" -eq 0 ]; then
    set -- dagster api grpc --host 0.0.0.0 --port "${DAGSTER_GRPC_PORT:-4000}" \
        --module-name samantics_dagster.definitions --location-name samantics_dagster
fi
exec "$@"
