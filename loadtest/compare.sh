#!/usr/bin/env bash
# Parley vs ngircd: the same fan-out scenario against both, on loopback,
# at a ladder of rates; prints a side-by-side markdown table.
#
#   loadtest/compare.sh                 # default ladder
#   RATES="500 1000" DURATION=5 loadtest/compare.sh
#
# Installs Debian's ngircd if it is missing (needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

RATES=${RATES:-"250 500 1000 1500"}
CLIENTS=${CLIENTS:-200}
ROOM_SIZE=${ROOM_SIZE:-20}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
PARLEY_PORT=${PARLEY_PORT:-17700}
IRC_PORT=${IRC_PORT:-16667}

if ! command -v ngircd >/dev/null 2>&1; then
    echo "installing ngircd..." >&2
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q ngircd >/dev/null
fi
# Debian starts the packaged service; it must not hold our port.
pkill -x ngircd 2>/dev/null || true

echo "building..." >&2
cargo build --release --workspace -q

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Parley, release build, fresh data directory, per-user limits lifted (the
# load generator sends far faster than a person), default durability: every
# message is stored durably before it is delivered.
cat > "$work/parley.toml" <<CONF
listen = "127.0.0.1:$PARLEY_PORT"
data_dir = "$work/parley-data"
log_level = "warn"
msg_rate_per_sec = 1e9
msg_burst = 1000000000
# Set-up signs up and logs in every client from a few loopback addresses.
sign_ups_per_addr_per_min = 1e9
sign_up_burst_per_addr = 1000000000
sign_ups_per_min = 1e12
log_ins_per_addr_per_min = 1e9
log_in_burst_per_addr = 1000000000
log_ins_per_min = 1e12
max_anonymous_per_addr = 1000000
max_anonymous = 1000000
CONF
target/release/parleyd --config "$work/parley.toml" 2>"$work/parleyd.log" &
parley_pid=$!
pids+=("$parley_pid")

# ngircd, tuned for a fair fight: no flood penalty (it otherwise throttles
# clients sending more than a few commands a second), no connection caps,
# no DNS or ident look-ups.
cat > "$work/ngircd.conf" <<CONF
[Global]
Name = irc.localhost
Info = Parley comparison
Listen = 127.0.0.1
Ports = $IRC_PORT
PidFile = $work/ngircd.pid
MotdPhrase = load test
[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
MaxNickLength = 30
MaxPenaltyTime = 0
PingTimeout = 600
PongTimeout = 600
[Options]
DNS = no
Ident = no
PAM = no
CONF
ngircd -n -f "$work/ngircd.conf" >"$work/ngircd.log" 2>&1 &
irc_pid=$!
pids+=("$irc_pid")
sleep 1

for rate in $RATES; do
    for proto in parley irc; do
        if [ "$proto" = parley ]; then port=$PARLEY_PORT pid=$parley_pid; else port=$IRC_PORT pid=$irc_pid; fi
        echo "fanout, $proto, $rate msg/s..." >&2
        # ngircd's listen backlog is small: pace connection set-up.
        target/release/parley-load --target "127.0.0.1:$port" --protocol "$proto" --scenario fanout \
            --clients "$CLIENTS" --room-size "$ROOM_SIZE" --rate "$rate" --duration "$DURATION" \
            --warmup "$WARMUP" --connect-rate 200 --server-pid "$pid" --quiet \
            --json "$work/$proto-$rate.json" >/dev/null
    done
done

python3 - "$work" $RATES <<'PY'
import json, sys
work, rates = sys.argv[1], sys.argv[2:]
def load(proto, rate):
    return json.load(open(f"{work}/{proto}-{rate}.json"))
print()
print("| msg/s | server | deliveries/s | p50 ms | p99 ms | p99.9 ms | CPU s | peak RSS KiB | errors |")
print("|---|---|---|---|---|---|---|---|---|")
for rate in rates:
    p, i = load("parley", rate), load("irc", rate)
    for name, d in (("Parley", p), ("ngircd", i)):
        l = d["latency_ms"]
        print(f"| {rate} | {name} | {d['throughput']['delivered_per_s']:.0f} | {l['p50']:.2f} | {l['p99']:.2f} | "
              f"{l['p999']:.2f} | {d.get('server_cpu_s', 0):.2f} | {d.get('server_rss_kib', 0)} | {sum(d['errors'].values())} |")
    def ratio(f):
        a, b = f(p), f(i)
        return f"{a / b:.2f}" if b else "n/a"
    print(f"| {rate} | Parley/ngircd | {ratio(lambda d: d['throughput']['delivered_per_s'])} | "
          f"{ratio(lambda d: d['latency_ms']['p50'])} | {ratio(lambda d: d['latency_ms']['p99'])} | "
          f"{ratio(lambda d: d['latency_ms']['p999'])} | {ratio(lambda d: d.get('server_cpu_s', 0))} | "
          f"{ratio(lambda d: d.get('server_rss_kib', 0))} | |")
c = load("parley", rates[0])
print()
print(f"{c['clients']} clients in rooms of {c['room_size']}, {c['duration_s']} s measured after {c['warmup_s']} s warm-up, "
      f"{c['payload']}-byte messages, latency from intended send time (open loop).")
print("Parley echoes each message to its sender (room-size recipients); IRC does not (room-size - 1).")
print("ngircd stores nothing; Parley stores every message durably (SQLite, synchronous=FULL) before delivering it.")
PY
