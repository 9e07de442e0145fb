#!/usr/bin/env bash
# Parley vs ngircd: the same fan-out scenario against both, on loopback,
# 1,000 clients in rooms of 100 and in rooms of 10, at a ladder of offered
# rates each; prints side-by-side markdown tables, each server's ceiling,
# and draws delivered against offered (OUT/ladder.svg).
#
#   loadtest/compare.sh                              # the default ladders
#   RATES_100="1000 8000" RATES_10="10000" DURATION=5 loadtest/compare.sh
#   ROOM_SIZES=10 loadtest/compare.sh                # one room size only
#
# Every run's JSON report stays in OUT (default target/compare).
# Installs Debian's ngircd if it is missing (needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

ROOM_SIZES=${ROOM_SIZES:-"100 10"}
RATES_100=${RATES_100:-"1000 4000 8000 12000 16000 20000 24000"}
RATES_10=${RATES_10:-"5000 10000 20000 30000 40000 60000"}
CLIENTS=${CLIENTS:-1000}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
OUT=${OUT:-target/compare}
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

mkdir -p "$OUT"
rm -f "$OUT"/*.json
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
# Set-up signs up 1,000 accounts per run; password hashing is not what is
# compared, so it is made cheap (Argon2id with 1 MiB and one pass).
argon2_memory_kib = 1024
argon2_iterations = 1
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

rates_for() {
    case $1 in
        100) echo "$RATES_100" ;;
        10) echo "$RATES_10" ;;
        *) echo "${RATES:-1000 5000 10000}" ;;
    esac
}

for size in $ROOM_SIZES; do
    for rate in $(rates_for "$size"); do
        for proto in parley irc; do
            if [ "$proto" = parley ]; then port=$PARLEY_PORT pid=$parley_pid; else port=$IRC_PORT pid=$irc_pid; fi
            echo "fanout, rooms of $size, $proto, $rate msg/s..." >&2
            # ngircd's listen backlog is small: pace connection set-up.
            target/release/parley-load --target "127.0.0.1:$port" --protocol "$proto" --scenario fanout \
                --clients "$CLIENTS" --room-size "$size" --rate "$rate" --duration "$DURATION" \
                --warmup "$WARMUP" --connect-rate 200 --server-pid "$pid" --quiet \
                --json "$OUT/$proto-r$size-$rate.json" >/dev/null
        done
    done
done

target/release/parley-load ladder "$OUT/ladder.svg" "$OUT"/*.json

python3 - "$OUT" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
runs = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, "*.json")))]
def msgs(d):
    # Messages/s whose every delivery arrived (offered scaled by what arrived).
    e = d["expected_deliveries"]
    return d["sent"] / d["duration_s"] * (d["delivered"] / e) if e else 0.0
def busy(d):
    return sum(n for code, n in d["errors"].items() if "BUSY" in code)
for size in sorted({d["room_size"] for d in runs}, reverse=True):
    at = {(d["protocol"], d["rate"]): d for d in runs if d["room_size"] == size}
    rates = sorted({r for _, r in at})
    print()
    print(f"### {runs[0]['clients']} clients in rooms of {size}")
    print()
    print("| offered msg/s | server | delivered msg/s | deliveries/s | p50 ms | p99 ms | p99.9 ms | CPU s | peak RSS KiB | refused (ER_BUSY) | other errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for rate in rates:
        p, i = at.get(("parley", rate)), at.get(("irc", rate))
        for name, d in (("Parley", p), ("ngircd", i)):
            if d is None:
                continue
            l = d["latency_ms"]
            errors = sum(d["errors"].values())
            print(f"| {rate:.0f} | {name} | {msgs(d):.0f} | {d['throughput']['delivered_per_s']:.0f} | {l['p50']:.2f} | "
                  f"{l['p99']:.2f} | {l['p999']:.2f} | {d.get('server_cpu_s', 0):.2f} | {d.get('server_rss_kib', 0)} | "
                  f"{busy(d)} | {errors - busy(d)} |")
        if p and i:
            def ratio(f):
                a, b = f(p), f(i)
                return f"{a / b:.2f}" if b else "n/a"
            print(f"| {rate:.0f} | Parley/ngircd | {ratio(msgs)} | {ratio(lambda d: d['throughput']['delivered_per_s'])} | "
                  f"{ratio(lambda d: d['latency_ms']['p50'])} | {ratio(lambda d: d['latency_ms']['p99'])} | "
                  f"{ratio(lambda d: d['latency_ms']['p999'])} | {ratio(lambda d: d.get('server_cpu_s', 0))} | "
                  f"{ratio(lambda d: d.get('server_rss_kib', 0))} | | |")
    print()
    best = {}
    for (proto, _), d in at.items():
        name = "Parley" if proto != "irc" else "ngircd"
        if d["throughput"]["delivered_per_s"] > best.get(name, (0, None))[0]:
            best[name] = (d["throughput"]["delivered_per_s"], d)
    line = ", ".join(f"{n} {v:.0f} deliveries/s ({msgs(d):.0f} msg/s, offered {d['rate']:.0f})" for n, (v, d) in sorted(best.items()))
    if "Parley" in best and "ngircd" in best and best["ngircd"][0]:
        line += f"; Parley/ngircd {best['Parley'][0] / best['ngircd'][0]:.2f}"
    print(f"Ceiling (most delivered of the ladder): {line}.")
c = runs[0]
print()
print(f"{c['duration_s']} s measured after {c['warmup_s']} s warm-up, {c['payload']}-byte messages, open loop, latency from")
print("each message's intended send time. Delivered msg/s: offered rate times the share of expected deliveries made.")
print("Parley echoes each message to its sender (room-size recipients); IRC does not (room-size - 1).")
print("ngircd stores nothing; Parley stores every message durably (SQLite, synchronous=FULL) before delivering it.")
print(f"Plot: {out}/ladder.svg")
PY
