#!/usr/bin/env bash
# What a delivery costs on one node and on three: the same fan-out run
# against 1 node on SQLite, 1 node on PostgreSQL, and 3 nodes on PostgreSQL
# and NATS (clients spread over the nodes, so every room has members on
# each), at one offered rate. Prints deliveries/s and the nodes' CPU seconds
# per million deliveries (PostgreSQL's and NATS's own CPU apart).
#
#   loadtest/cluster.sh
#   RATE=2000 CLIENTS=600 ROOM_SIZE=60 DURATION=10 loadtest/cluster.sh
#
# Needs PostgreSQL (PG, default postgres://postgres@127.0.0.1, a superuser:
# each run gets a fresh database) and NATS (NATS, default
# nats://127.0.0.1:4222). Reports stay in OUT (default target/cluster).
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-600}
ROOM_SIZE=${ROOM_SIZE:-60}
RATE=${RATE:-1000}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
PG=${PG:-postgres://postgres@127.0.0.1}
NATS=${NATS:-nats://127.0.0.1:4222}
OUT=${OUT:-target/cluster}
BASE_PORT=${BASE_PORT:-17800}

echo "building..." >&2
cargo build --release --workspace --features cluster -q

mkdir -p "$OUT"
rm -f "$OUT"/*.json
work=$(mktemp -d)
pids=()
stop_nodes() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
trap 'stop_nodes; rm -rf "$work"' EXIT

# A fresh PostgreSQL database; prints its URL.
fresh_database() {
    local name="parley_bench_$1"
    psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $name" >/dev/null
    psql "$PG/postgres" -qc "CREATE DATABASE $name" >/dev/null
    echo "$PG/$name"
}

# CPU seconds (user + system) of every process named $1.
cpu_of() {
    local total=0
    for pid in $(pgrep -x "$1" || true); do
        total=$(awk -v t="$total" '{ print t + ($14 + $15) / 100 }' "/proc/$pid/stat" 2>/dev/null || echo "$total")
    done
    echo "$total"
}

# Starts node $2 of configuration $1 (store URL $3, bus URL $4 or empty).
start_node() {
    local config=$1 i=$2 store=$3 bus=$4
    local dir="$work/$config-$i" port=$((BASE_PORT + i))
    mkdir -p "$dir"
    {
        echo "listen = \"127.0.0.1:$port\""
        echo "data_dir = \"$dir/data\""
        echo 'log_level = "warn"'
        echo 'web = "off"'
        # The load generator sends far faster than a person, and signs up
        # every client from a few loopback addresses.
        echo 'msg_rate_per_sec = 1e9'
        echo 'msg_burst = 1000000000'
        echo 'sign_ups_per_addr_per_min = 1e9'
        echo 'sign_up_burst_per_addr = 1000000000'
        echo 'sign_ups_per_min = 1e12'
        echo 'log_ins_per_addr_per_min = 1e9'
        echo 'log_in_burst_per_addr = 1000000000'
        echo 'log_ins_per_min = 1e12'
        echo 'rooms_burst = 1000000000'
        echo 'max_anonymous_per_addr = 1000000'
        echo 'max_anonymous = 1000000'
        echo 'job_queue = 16384'
        echo 'argon2_memory_kib = 1024'
        echo 'argon2_iterations = 1'
        [ -n "$store" ] && echo "cluster_store = \"$store\""
        [ -n "$bus" ] && echo "cluster_bus = \"$bus\"" && echo "cluster_subject = \"parleybench.$config\""
    } > "$dir/parley.toml"
    target/release/parleyd --config "$dir/parley.toml" 2> "$dir/parleyd.log" &
    pids+=($!)
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return
        sleep 0.1
    done
    echo "node $i of $config did not start:" >&2
    cat "$dir/parleyd.log" >&2
    exit 1
}

# Runs the fan-out against the nodes started last; $1 names the report.
load() {
    local name=$1 targets="" node_pids=""
    for i in $(seq 0 $((${#pids[@]} - 1))); do
        targets="$targets${targets:+,}127.0.0.1:$((BASE_PORT + i))"
        node_pids="$node_pids${node_pids:+,}${pids[$i]}"
    done
    local pg_before nats_before
    pg_before=$(cpu_of postgres)
    nats_before=$(cpu_of nats-server)
    target/release/parley-load --scenario fanout --target "$targets" --server-pid "$node_pids" \
        --clients "$CLIENTS" --room-size "$ROOM_SIZE" --rate "$RATE" \
        --duration "$DURATION" --warmup "$WARMUP" --quiet --json "$OUT/$name.json" >&2
    awk -v a="$(cpu_of postgres)" -v b="$pg_before" 'BEGIN { print a - b }' > "$OUT/$name.pg-cpu"
    awk -v a="$(cpu_of nats-server)" -v b="$nats_before" 'BEGIN { print a - b }' > "$OUT/$name.nats-cpu"
}

echo "1 node, SQLite..." >&2
start_node sqlite 0 "" ""
load sqlite
stop_nodes

echo "1 node, PostgreSQL..." >&2
start_node pg1 0 "$(fresh_database one)" ""
load pg1
stop_nodes

echo "3 nodes, PostgreSQL and NATS..." >&2
store=$(fresh_database three)
for i in 0 1 2; do start_node pg3 "$i" "$store" "$NATS"; done
load pg3
stop_nodes

# The nodes' CPU is read from the end of set-up to the end of the drain;
# deliveries are counted over the measured seconds: per delivery, the CPU
# is divided by the deliveries of the whole sending time (warm-up and
# measured seconds at the measured rate).
python3 - "$OUT" "$RATE" "$CLIENTS" "$ROOM_SIZE" "$WARMUP" "$DURATION" <<'PY'
import json, sys
out, rate, clients, room, warmup, duration = sys.argv[1:]
sending_s = float(warmup) + float(duration)
print(f"\nfan-out, {clients} clients in rooms of {room}, {rate} messages/s offered\n")
print("| configuration | delivered/s | p99 ms | errors | nodes' CPU s | per 1M deliveries | PostgreSQL CPU s | NATS CPU s |")
print("|---|---|---|---|---|---|---|---|")
base = None
for name, label in [("sqlite", "1 node, SQLite"), ("pg1", "1 node, PostgreSQL"), ("pg3", "3 nodes, PostgreSQL + NATS")]:
    r = json.load(open(f"{out}/{name}.json"))
    delivered = r["throughput"]["delivered_per_s"] * sending_s
    cpu = r.get("server_cpu_s") or 0.0
    per_m = cpu / delivered * 1e6 if delivered else float("nan")
    pg = open(f"{out}/{name}.pg-cpu").read().strip() or "0"
    nats = open(f"{out}/{name}.nats-cpu").read().strip() or "0"
    errors = sum(r["errors"].values())
    print(f"| {label} | {r['throughput']['delivered_per_s']:,.0f} | {r['latency_ms']['p99']:.2f} | {errors} | {cpu:.2f} | {per_m:.2f} | {float(pg):.2f} | {float(nats):.2f} |")
PY
