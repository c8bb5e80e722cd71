#!/usr/bin/env bash
# Two apps, two Outrigger sidecars, one service invocation in each addressing form.
#
#   bash examples/invoke.sh
#
#   echo_app :8081 <- alpha sidecar :3500 ==(daprd's ServiceInvocation gRPC)==> beta sidecar :3501 -> echo_app :8082
#
# Everything listens on 127.0.0.1. Name resolution uses a SQLite file in a temporary directory,
# so the default database (<state dir>/outrigger/nameresolution.db) is not touched. Every process
# started here is stopped on exit, also on failure or Ctrl-C.
#
# Ports can be overridden when one of them is taken, e.g. ALPHA_HTTP_PORT=3600 bash examples/invoke.sh
set -euo pipefail

ALPHA_APP_PORT=${ALPHA_APP_PORT:-8081}
BETA_APP_PORT=${BETA_APP_PORT:-8082}
ALPHA_HTTP_PORT=${ALPHA_HTTP_PORT:-3500}
BETA_HTTP_PORT=${BETA_HTTP_PORT:-3501}
ALPHA_GRPC_PORT=${ALPHA_GRPC_PORT:-50001}
BETA_GRPC_PORT=${BETA_GRPC_PORT:-50011}
ALPHA_METRICS_PORT=${ALPHA_METRICS_PORT:-9090}
BETA_METRICS_PORT=${BETA_METRICS_PORT:-9091}
# How long to wait for both sidecars to report healthy, in seconds.
READY_TIMEOUT=${READY_TIMEOUT:-30}

cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}

# Settings from the caller's environment would change what this example shows.
unset DAPR_HOST_IP DAPR_API_TOKEN APP_API_TOKEN

work=$(mktemp -d "${TMPDIR:-/tmp}/outrigger-invoke.XXXXXX")
pids=()
names=()

cleanup() {
    local status=$?
    # (The ${a[@]+...} form keeps bash 3.2, macOS's, happy when nothing was started yet.)
    for pid in ${pids[@]+"${pids[@]}"}; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in ${pids[@]+"${pids[@]}"}; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ $status -ne 0 ]]; then
        for log in "$work"/*.log; do
            [[ -e $log ]] || continue
            echo "---- last lines of $(basename "$log") ----" >&2
            tail -n 20 "$log" >&2
        done
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for var in ALPHA_APP_PORT BETA_APP_PORT ALPHA_HTTP_PORT BETA_HTTP_PORT ALPHA_METRICS_PORT BETA_METRICS_PORT; do
    if port_in_use "${!var}"; then
        echo "port ${!var} on 127.0.0.1 is already in use; pick another with $var=PORT" >&2
        exit 1
    fi
done

# Two commands on purpose: built alone, the sidecar is the same binary `cargo run --release --bin
# outrigger` gives (built together with an example, dev-dependency features would be unified into
# it). The echo app is a debug build, as `cargo run --example echo_app` and `cargo test` make it.
echo "==> building the sidecar (release) and the echo app (the first build takes several minutes)"
cargo build --release --bin outrigger
cargo build --example echo_app

cat >"$work/config.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: invoke-example
spec:
  nameResolution:
    component: sqlite
    configuration:
      connectionString: $work/nameresolution.db
EOF

start() {
    local name=$1
    shift
    "$@" >"$work/$name.log" 2>&1 &
    pids+=("$!")
    names+=("$name")
}

echo "==> starting two echo apps and two sidecars (logs in $work)"
start app-alpha "$target_dir/debug/examples/echo_app" "$ALPHA_APP_PORT"
start app-beta "$target_dir/debug/examples/echo_app" "$BETA_APP_PORT"
start sidecar-alpha "$target_dir/release/outrigger" --app-id alpha --app-port "$ALPHA_APP_PORT" \
    --dapr-http-port "$ALPHA_HTTP_PORT" --dapr-grpc-port "$ALPHA_GRPC_PORT" \
    --metrics-port "$ALPHA_METRICS_PORT" --metrics-listen-address 127.0.0.1 \
    --config "$work/config.yaml"
start sidecar-beta "$target_dir/release/outrigger" --app-id beta --app-port "$BETA_APP_PORT" \
    --dapr-http-port "$BETA_HTTP_PORT" --dapr-grpc-port "$BETA_GRPC_PORT" \
    --metrics-port "$BETA_METRICS_PORT" --metrics-listen-address 127.0.0.1 \
    --config "$work/config.yaml"

# /v1.0/healthz answers 204 once the sidecar is up and its app's port accepts connections.
wait_healthy() {
    local name=$1 port=$2 deadline=$((SECONDS + READY_TIMEOUT))
    until curl --silent --fail --max-time 1 --output /dev/null "http://127.0.0.1:$port/v1.0/healthz"; do
        for i in "${!pids[@]}"; do
            if ! kill -0 "${pids[i]}" 2>/dev/null; then
                echo "${names[i]} exited early (see its log below)" >&2
                exit 1
            fi
        done
        if ((SECONDS >= deadline)); then
            echo "$name was not healthy on port $port within ${READY_TIMEOUT}s" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "    $name is healthy on 127.0.0.1:$port"
}
wait_healthy alpha "$ALPHA_HTTP_PORT"
wait_healthy beta "$BETA_HTTP_PORT"

# Shows a command line with each argument quoted where the shell needs it.
show() {
    local arg line="\$"
    for arg in "$@"; do
        if [[ $arg =~ ^[A-Za-z0-9_./:=@-]+$ ]]; then
            line+=" $arg"
        else
            line+=" '$arg'"
        fi
    done
    echo "$line"
}

# Indents JSON when python3 is at hand; prints it as it came otherwise.
pretty() {
    if command -v python3 >/dev/null && python3 -m json.tool <<<"$1" 2>/dev/null; then
        return
    fi
    echo "$1"
}

# Prints the request, then the response, and fails unless the status is 200.
invoke() {
    echo
    show curl "$@"
    local out status
    out=$(curl --silent --show-error --write-out '\n%{http_code}' "$@")
    status=${out##*$'\n'}
    pretty "${out%$'\n'*}"
    echo "(HTTP $status)"
    if [[ $status != 200 ]]; then
        echo "invocation failed with HTTP $status" >&2
        exit 1
    fi
}

echo
echo "==> path form: alpha's app calls beta's app through both sidecars"
invoke -X POST "http://127.0.0.1:$ALPHA_HTTP_PORT/v1.0/invoke/beta/method/orders/7?x=1" \
    -H 'content-type: application/json' -d '{"id":7,"item":"paddle"}'

echo
echo "==> header form: the same call, addressed with dapr-app-id"
invoke -X POST "http://127.0.0.1:$ALPHA_HTTP_PORT/orders/7?x=1" -H 'dapr-app-id: beta' \
    -H 'content-type: application/json' -d '{"id":7,"item":"paddle"}'

echo
echo "==> alpha's invocation metrics (127.0.0.1:$ALPHA_METRICS_PORT)"
curl --silent --show-error "http://127.0.0.1:$ALPHA_METRICS_PORT/metrics" |
    grep '^dapr_runtime_service_invocation_req_sent_total' || true

echo
echo "==> done; stopping everything"
