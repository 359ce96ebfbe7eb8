#!/usr/bin/env bash
# esprit's load lab: builds a network-namespace topology, runs espritd and
# esprit-pktgen in it for one scenario, prints pktgen's table, and removes
# everything on exit (also on error or Ctrl-C). Run as root.
#
#   deploy/lab/lab.sh SCENARIO            # smoke, manual-1k, ike-1k, nat, protected
#   CLIENTS=10000 RATE=500000 SIZE=imix deploy/lab/lab.sh manual-1k
#
#   clients ns  203.0.113.2 ------------------------ 203.0.113.1  gateway ns (espritd)
#   (or, with a NAT:                                                   |  192.0.2.1
#   clients ns  198.51.100.2 -- 198.51.100.1 [NAT ns, masquerade]     |
#                               203.0.113.2 ------- 203.0.113.1       |  192.0.2.2
#                                                                   protected ns (10.1.0.1)
#
# The gateway's inside reflects every decrypted packet back to its sender
# (dataplane.inside.kind = "reflect"), except in `protected`, where it is a
# TUN device routed to the protected namespace and a UDP echo there answers.
#
# Environment (defaults per scenario): CLIENTS, RATE (packets/s, empty =
# flat out), SIZE (64, 1400, imix), DURATION (s), COUNT (packets, instead of
# DURATION), WINDOW (packets in flight per thread at most: closed loop),
# TRAIN (packets per client in a row; default 1, round robin), SHUFFLE=1
# (clients take turns in a fixed random order, not their set-up order),
# THREADS, SOCKETS, WORKERS (gateway data-plane workers), REKEY_STORM
# (ike: every client rekeys once while traffic flows, spread over this many
# seconds; run DURATION a quiet quarter past the last round so that each
# round is measured against quiet seconds on both sides), REKEY_ROUNDS
# (that many storms, a quiet quarter before each), STORM_CONTROL=1 (the
# storm's rounds timed and measured, but no client rekeys: the noise floor
# to compare a storm's figures with), OUT
# (directory for SCENARIO.json and SCENARIO.svg, default ./lab-out),
# BIN_DIR (where espritd and esprit-pktgen are; default target/release,
# else target/debug), KEEP=1 keeps the work directory with the logs,
# LAB_TAG names the namespaces (default esplab-PID), PIN=1 pins the
# gateway's workers to the last WORKERS cores (`[dataplane] cores`; espritd
# then keeps its control thread off them) and pktgen to the cores before;
# PIN=2 keeps all of espritd on the workers' cores. INNER6=1 gives the
# clients IPv6 inner addresses (manual ones in fd00:0:0:128::/64, IKE ones
# leased from fd00:0:0:128::/105; to fd00:0:0:1::1; an IPv6 packet is at
# least 72 bytes: its headers and pktgen's stamp).
set -euo pipefail

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 2
}

SCENARIO=${1:-}
[ -n "$SCENARIO" ] || usage
[ "$(id -u)" = 0 ] || { echo "lab.sh: run as root (network namespaces)" >&2; exit 2; }

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MODE=manual NAT=0 INSIDE=reflect
D_CLIENTS=100 D_RATE=10000 D_COUNT= D_DURATION=5
case "$SCENARIO" in
    smoke) D_COUNT=5000 ;;
    manual-1k) D_CLIENTS=1000 D_RATE=100000 ;;
    ike-1k) MODE=ike D_CLIENTS=1000 D_RATE=100000 ;;
    nat) MODE=ike NAT=1 D_CLIENTS=200 ;;
    protected) INSIDE=tun D_RATE=2000 D_DURATION=3 ;;
    -h | --help) usage ;;
    *) echo "lab.sh: unknown scenario $SCENARIO (smoke, manual-1k, ike-1k, nat, protected)" >&2; exit 2 ;;
esac
CLIENTS=${CLIENTS:-$D_CLIENTS}
RATE=${RATE-$D_RATE}
COUNT=${COUNT:-$D_COUNT}
DURATION=${DURATION:-$D_DURATION}
SIZE=${SIZE:-64}
THREADS=${THREADS:-1}
SOCKETS=${SOCKETS:-4}
WORKERS=${WORKERS:-1}
PIN=${PIN:-0}
case "${PIN:-0}" in 0 | 1 | 2) ;; *) echo "lab.sh: PIN must be 0, 1 or 2" >&2; exit 2 ;; esac
INNER6=${INNER6:-0}
case "$INNER6" in
    0) ;;
    1) [ "$INSIDE" = reflect ] ||
        { echo "lab.sh: INNER6=1 needs the reflecting inside (every scenario but protected)" >&2; exit 2; } ;;
    *) echo "lab.sh: INNER6 must be 0 or 1" >&2; exit 2 ;;
esac
OUT=${OUT:-$PWD/lab-out}

if [ -z "${BIN_DIR:-}" ]; then
    T=${CARGO_TARGET_DIR:-$ROOT/target}
    if [ -x "$T/release/espritd" ] && [ -x "$T/release/esprit-pktgen" ]; then
        BIN_DIR=$T/release
    else
        BIN_DIR=$T/debug
    fi
fi
ESPRITD=$BIN_DIR/espritd
PKTGEN=$BIN_DIR/esprit-pktgen
for b in "$ESPRITD" "$PKTGEN"; do
    [ -x "$b" ] || { echo "lab.sh: $b not found: cargo build --release, or set BIN_DIR" >&2; exit 2; }
done

# Names the namespaces (TAG-cl, TAG-gw, ...) and the work directory.
TAG=${LAB_TAG:-esplab-$$}
[[ $TAG =~ ^[a-z0-9-]{1,24}$ ]] || { echo "lab.sh: LAB_TAG must be 1-24 of a-z 0-9 -" >&2; exit 2; }
NS_CL=$TAG-cl NS_NAT=$TAG-nat NS_GW=$TAG-gw NS_PN=$TAG-pn
WORK=$(mktemp -d "/tmp/$TAG.XXXXXX")
PIDS=()

cleanup() {
    local rc=$?
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    # Anything else still inside our namespaces was started by this run:
    # a namespace with a process in it would outlive `ip netns del`.
    for ns in "$NS_CL" "$NS_NAT" "$NS_GW" "$NS_PN"; do
        local left
        left=$(ip netns pids "$ns" 2>/dev/null || true)
        if [ -n "$left" ]; then
            # shellcheck disable=SC2086
            kill -9 $left 2>/dev/null || true
        fi
        ip netns del "$ns" 2>/dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ] || [ $rc != 0 ]; then
        echo "lab.sh: logs in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_ns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

new_ns() {
    ip netns add "$1"
    in_ns "$1" ip link set lo up
}

# veth NS_A IF_A ADDR_A NS_B IF_B ADDR_B
veth() {
    ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
    in_ns "$1" ip addr add "$3" dev "$2"
    in_ns "$4" ip addr add "$6" dev "$5"
    # Room for an IMIX 1500-byte inner packet in ESP-in-UDP, unfragmented.
    in_ns "$1" ip link set "$2" mtu 1600 up
    in_ns "$4" ip link set "$5" mtu 1600 up
}

echo "lab.sh: scenario $SCENARIO: $MODE mode, $CLIENTS clients, NAT $NAT, inside $INSIDE, binaries from $BIN_DIR" >&2
new_ns "$NS_CL"
new_ns "$NS_GW"
new_ns "$NS_PN"
if [ "$NAT" = 1 ]; then
    new_ns "$NS_NAT"
    veth "$NS_CL" cl0 198.51.100.2/24 "$NS_NAT" nat-in 198.51.100.1/24
    veth "$NS_NAT" nat-out 203.0.113.2/24 "$NS_GW" gw0 203.0.113.1/24
    in_ns "$NS_CL" ip route add default via 198.51.100.1
    in_ns "$NS_NAT" sysctl -qw net.ipv4.ip_forward=1
    in_ns "$NS_NAT" nft -f - <<NFT
table ip esplab {
    chain post {
        type nat hook postrouting priority srcnat;
        oifname "nat-out" masquerade
    }
}
NFT
    CLIENT_IP=198.51.100.2
else
    veth "$NS_CL" cl0 203.0.113.2/24 "$NS_GW" gw0 203.0.113.1/24
    CLIENT_IP=203.0.113.2
fi
veth "$NS_GW" pn0 192.0.2.1/24 "$NS_PN" pn0 192.0.2.2/24

GEN=(gen-config --clients "$CLIENTS" --out "$WORK/gateway.toml" --gateway 203.0.113.1:4500
    --workers "$WORKERS" --client-ip "$CLIENT_IP" --sockets "$SOCKETS" --control "$WORK/ctl.sock")
[ "$MODE" = ike ] && GEN+=(--ike)
[ "$INNER6" = 1 ] && GEN+=(--inner-ipv6)
"$PKTGEN" "${GEN[@]}" 2>/dev/null

# PIN=1: workers on the last cores, pktgen (TASKSET) on the others; PIN=2
# also keeps espritd's other threads (its control thread) on the workers'
# cores, so the gateway pays for its control work with its own cores.
TASKSET=()
GW_TASKSET=()
if [ "${PIN:-0}" != 0 ]; then
    NCPU=$(nproc)
    [ "$NCPU" -gt "$WORKERS" ] || { echo "lab.sh: PIN needs more cores than WORKERS" >&2; exit 2; }
    CORES=$(seq -s, $((NCPU - WORKERS)) $((NCPU - 1)))
    sed -i "s|^workers = .*|&\ncores = [$CORES]|" "$WORK/gateway.toml"
    TASKSET=(taskset -c "0-$((NCPU - WORKERS - 1))")
    [ "$PIN" = 2 ] && GW_TASKSET=(taskset -c "$CORES")
    echo "lab.sh: pinned: gateway workers on cores $CORES${GW_TASKSET:+ with the rest of espritd}, pktgen on 0-$((NCPU - WORKERS - 1))" >&2
fi

if [ "$INSIDE" = tun ]; then
    # The TUN carries the clients' decrypted packets into the gateway's
    # kernel, which routes them to the protected namespace; the echo there
    # answers to the client's inner address, routed back into the TUN.
    sed -i 's|^kind = "reflect"|kind = "tun"\nname = "esprit0"\naddresses = ["10.0.0.1/32"]|' "$WORK/gateway.toml"
    in_ns "$NS_GW" sysctl -qw net.ipv4.ip_forward=1
    in_ns "$NS_GW" ip route add 10.1.0.0/16 via 192.0.2.2
    in_ns "$NS_PN" ip addr add 10.1.0.1/32 dev lo
    in_ns "$NS_PN" ip route add 10.128.0.0/9 via 192.0.2.1
    # `ip netns exec` execs the command, so $! is the echo itself.
    ip netns exec "$NS_PN" python3 "$HERE/udp_echo.py" 10.1.0.1 7 >"$WORK/echo.log" 2>&1 &
    PIDS+=($!)
    # Traffic before the echo is bound meets a closed port: ICMP errors
    # come back through the tunnel and pktgen counts them lost and foreign.
    for _ in $(seq 100); do
        in_ns "$NS_PN" ss -Hlun src 10.1.0.1:7 | grep -q . && break
        kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$WORK/echo.log" >&2; exit 1; }
        sleep 0.05
    done
    in_ns "$NS_PN" ss -Hlun src 10.1.0.1:7 | grep -q . || { echo "lab.sh: the UDP echo did not start" >&2; exit 1; }
fi

ip netns exec "$NS_GW" "${GW_TASKSET[@]}" "$ESPRITD" --config "$WORK/gateway.toml" --stats-interval 1 >"$WORK/espritd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    grep -q "data plane running" "$WORK/espritd.log" && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$WORK/espritd.log" >&2; exit 1; }
    sleep 0.1
done
grep -q "data plane running" "$WORK/espritd.log" || { echo "lab.sh: espritd did not start" >&2; exit 1; }

mkdir -p "$OUT"
# The gateway's PID (`ip netns exec` execs it): pktgen reports its CPU
# time per round trip.
RUN=("$MODE" --config "$WORK/gateway.toml" --threads "$THREADS" --size "$SIZE"
    --json "$OUT/$SCENARIO.json" --plot "$OUT/$SCENARIO.svg" --gateway-pid "${PIDS[-1]}")
[ -n "$RATE" ] && RUN+=(--rate "$RATE")
[ -n "${WINDOW:-}" ] && RUN+=(--window "$WINDOW")
[ -n "${TRAIN:-}" ] && RUN+=(--train "$TRAIN")
[ "${SHUFFLE:-0}" = 1 ] && RUN+=(--shuffle)
if [ -n "$COUNT" ]; then RUN+=(--count "$COUNT"); else RUN+=(--duration "$DURATION"); fi
[ "$MODE" = ike ] && RUN+=(--clients "$CLIENTS" --client-ip "$CLIENT_IP" --sockets "$SOCKETS")
[ "$MODE" = ike ] && [ -n "${REKEY_STORM:-}" ] && RUN+=(--rekey-storm "$REKEY_STORM")
[ "$MODE" = ike ] && [ -n "${REKEY_ROUNDS:-}" ] && RUN+=(--rekey-rounds "$REKEY_ROUNDS")
[ "$MODE" = ike ] && [ -n "${REKEY_STORM:-}" ] && [ "${STORM_CONTROL:-0}" = 1 ] && RUN+=(--storm-control)
echo "lab.sh: esprit-pktgen ${RUN[*]}" >&2
in_ns "$NS_CL" "${TASKSET[@]}" "$PKTGEN" "${RUN[@]}"
# The gateway's peak memory, for memory per tunnel (compare runs with
# different CLIENTS).
HWM=$(awk '/^VmHWM/ { print $2 }' "/proc/${PIDS[-1]}/status" 2>/dev/null || true)
[ -n "$HWM" ] && echo "gateway (espritd) peak RSS: $HWM KiB" >&2
echo "lab.sh: wrote $OUT/$SCENARIO.json and $OUT/$SCENARIO.svg" >&2
