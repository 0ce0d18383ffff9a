#!/usr/bin/env bash
# verify.sh -- check every piece of a running NAT lab with real clients.
#
#   ./verify.sh [LOGFILE]
#
# Needs a lab that is up (`./nat-lab up ...`). Prints one PASS/FAIL line per
# check and a closing "N passed, N failed" line; the exact command lines and
# their full output go to LOGFILE (default $NATLAB_RESULTS/verify-<natA>-<natB>.log,
# NATLAB_RESULTS defaulting to results/ beside this script; git-ignored).
# Exit status 0 only when every check passed.
set -uo pipefail
LAB_DIR=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
L="$LAB_DIR/nat-lab"
cd "$LAB_DIR"
eval "$("$L" env)" || { echo "lab is not up" >&2; exit 2; }
LOG=${1:-${NATLAB_RESULTS:-$LAB_DIR/results}/verify-$NATLAB_NAT_A-$NATLAB_NAT_B.log}
mkdir -p "$(dirname "$LOG")"
: > "$LOG"
TMP=$(mktemp -d -t natlab-verify.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
PASS=0 FAIL=0

note() { printf '%s\n' "$*" >> "$LOG"; }
result() { # ok? label
  if [[ $1 == 0 ]]; then PASS=$((PASS + 1)); echo "PASS  $2"; note "=> PASS"; else FAIL=$((FAIL + 1)); echo "FAIL  $2"; note "=> FAIL"; fi
  note ""
}
# x HOST CMD... : run CMD in HOST, log "$ nat-lab exec HOST CMD" and its output; sets OUT, RC
x() {
  local h=$1; shift
  note "\$ nat-lab exec $h $*"
  OUT=$("$L" exec "$h" "$@" 2>&1); RC=$?
  note "$OUT"
  return $RC
}
check() { # label HOST CMD... (pass when exit status is 0)
  local label=$1; shift
  note "### $label"
  x "$@"; result $RC "$label"
}
check_fails() { # label HOST CMD... (pass when the command FAILS: blocked traffic)
  local label=$1; shift
  note "### $label (expected to fail)"
  x "$@"; [[ $RC != 0 ]]; result $? "$label"
}
# deliver LABEL EXPECT(yes|no) RXHOST RXCMD TXHOST TXCMD : start a receiver
# (must exit by itself via timeout), send once, compare what arrived.
deliver() {
  local label=$1 expect=$2 rxh=$3 rxc=$4 txh=$5 txc=$6 token="natlab-$RANDOM$RANDOM"
  note "### $label (delivery expected: $expect)"
  note "\$ nat-lab exec $rxh sh -c '$rxc' &"
  "$L" exec "$rxh" sh -c "$rxc" > "$TMP/rx" 2>&1 &
  local rxpid=$!
  sleep 0.4
  note "\$ echo $token | nat-lab exec $txh sh -c '$txc'"
  echo "$token" | "$L" exec "$txh" sh -c "$txc" >> "$LOG" 2>&1
  wait "$rxpid"
  note "received: $(tr -d '\0' < "$TMP/rx" | head -c 300)"
  if grep -q "$token" "$TMP/rx"; then [[ $expect == yes ]]; else [[ $expect == no ]]; fi
  result $? "$label"
}

note "# nat-lab verification  $(date -u +%Y-%m-%dT%H:%M:%SZ)"
note "# rtrA=$NATLAB_NAT_A rtrB=$NATLAB_NAT_B v6-firewall=$NATLAB_V6_FIREWALL kernel=$(uname -r)"
note ""
A1=$NATLAB_A1_IP4 A2=$NATLAB_A2_IP4 B1=$NATLAB_B1_IP4 PUB1=$NATLAB_PUB1_IP4
SRV=$NATLAB_STUN_HOST GWA=$NATLAB_RTRA_LAN4 WANA=$NATLAB_RTRA_WAN4 WANB=$NATLAB_RTRB_WAN4

# ---------------------------------------------------------------- ping ------
check "ping a1 -> srv (IPv4, through rtrA)"         a1 ping -c2 -W1 -i0.2 "$SRV"
check "ping a1 -> a2 (IPv4, same LAN)"              a1 ping -c2 -W1 -i0.2 "$A2"
check "ping b1 -> pub1 (IPv4, through rtrB)"        b1 ping -c2 -W1 -i0.2 "$PUB1"
check "ping pub1 -> rtrB WAN"                       pub1 ping -c2 -W1 -i0.2 "$WANB"
check "ping a1 -> srv (IPv6 global)"                a1 ping -6 -c2 -W1 -i0.2 "$NATLAB_STUN6_HOST"
check "ping a1 -> b1 (IPv6 global, routed, no NAT)" a1 ping -6 -c2 -W1 -i0.2 "$NATLAB_B1_IP6"
check "ping a1 -> a2 (IPv6 link-local fe80::%eth0)" a1 ping -6 -c2 -W1 -i0.2 "$NATLAB_A2_LL6%eth0"
check "ping a1 -> rtrA fe80::1 (IPv6 default gw)"   a1 ping -6 -c2 -W1 -i0.2 "fe80::1%eth0"
if [[ $NATLAB_NAT_A != none && $NATLAB_NAT_A != firewall ]]; then
  check_fails "ping pub1 -> a1 private IPv4 (not routed)" pub1 ping -c1 -W1 "$A1"
fi

# ------------------------------------------------------- LAN-direct paths ---
deliver "UDP a1 -> a2 LAN-direct (IPv4)" yes a2 "timeout 2 socat -u UDP4-RECV:45000 STDOUT" a1 "socat -u STDIN UDP4-SENDTO:$A2:45000"
deliver "TCP a1 -> a2 LAN-direct (IPv4)" yes a2 "timeout 2 socat -u TCP4-LISTEN:45001,reuseaddr STDOUT" a1 "socat -u STDIN TCP4:$A2:45001"
deliver "UDP a1 -> a2 link-local IPv6"   yes a2 "timeout 2 socat -u UDP6-RECV:45002 STDOUT" a1 "socat -u STDIN UDP6-SENDTO:[$NATLAB_A2_LL6%eth0]:45002"
deliver "TCP a1 -> a2 link-local IPv6"   yes a2 "timeout 2 socat -u TCP6-LISTEN:45003,reuseaddr STDOUT" a1 "socat -u STDIN TCP6:[$NATLAB_A2_LL6%eth0]:45003"

# ------------------------------------------------- IPv6 stateful firewall ---
if [[ $NATLAB_V6_FIREWALL == on ]]; then v6in=no; else v6in=yes; fi
deliver "unsolicited UDP pub1 -> a1 IPv6 (firewall $NATLAB_V6_FIREWALL)" $v6in a1 "timeout 2 socat -u UDP6-RECV:45004 STDOUT" pub1 "socat -u STDIN UDP6-SENDTO:[$NATLAB_A1_IP6]:45004"
deliver "unsolicited TCP pub1 -> a1 IPv6 (firewall $NATLAB_V6_FIREWALL)" $v6in a1 "timeout 2 socat -u TCP6-LISTEN:45005,reuseaddr STDOUT" pub1 "timeout 1 socat -u STDIN TCP6:[$NATLAB_A1_IP6]:45005,connect-timeout=1"
deliver "outbound TCP a1 -> pub1 IPv6" yes pub1 "timeout 2 socat -u TCP6-LISTEN:45006,reuseaddr STDOUT" a1 "socat -u STDIN TCP6:[$NATLAB_PUB1_IP6]:45006"
deliver "unsolicited UDP pub1 -> rtrA WAN (no mapping)" no a1 "timeout 2 socat -u UDP4-RECV:45007 STDOUT" pub1 "socat -u STDIN UDP4-SENDTO:$WANA:45007"

# ------------------------------------------------------------------ STUN ----
note "### STUN binding a1 -> coturn (turnutils_stunclient)"
# turnutils_stunclient sends a 2nd request with RESPONSE-PORT = local port + 1 and
# waits forever for it (never answered behind a NAT): bound it with timeout.
x a1 timeout 2 turnutils_stunclient "$SRV"
mapped=$(grep -oE "UDP reflexive addr: [0-9.]+:[0-9]+" <<<"$OUT" | head -1 | awk '{print $4}')
note "mapped address: $mapped (rtrA WAN: $WANA)"
if [[ $NATLAB_NAT_A == none || $NATLAB_NAT_A == firewall ]]; then want=$A1; else want=$WANA; fi
[[ ${mapped%:*} == "$want" ]]; result $? "STUN binding a1 -> coturn returns ${want} (got $mapped)"
note "### STUN binding b1 -> coturn over IPv6 (tools/stun-binding.cjs, node dgram)"
x b1 node tools/stun-binding.cjs "$NATLAB_STUN6_HOST"
[[ $OUT == *"\"xorMapped\":\"[2001:db8:b:0:0:0:0:11]"* ]]; result $? "STUN binding b1 -> coturn over IPv6 returns b1's own global address"
note "### STUN binding a1 -> coturn with CHANGE-REQUEST (tools/stun-binding.cjs)"
x a1 node tools/stun-binding.cjs "$SRV" --change-ip --change-port
if [[ $NATLAB_NAT_A == full-cone || $NATLAB_NAT_A == none ]]; then
  [[ $OUT == *'"responseOrigin":"203.0.113.11:3479"'* ]]; result $? "CHANGE-REQUEST answer from the other address reaches a1 ($NATLAB_NAT_A)"
else
  [[ $OUT == *'"error":"timeout"'* ]]; result $? "CHANGE-REQUEST answer from the other address is filtered ($NATLAB_NAT_A)"
fi

# --------------------------------------------- RFC 5780 NAT discovery -------
exp_map() { case $1 in symmetric) echo "Address and Port Dependent Mapping" ;; none|firewall) echo "No NAT" ;; *) echo "NAT with Endpoint Independent Mapping" ;; esac; }
exp_filt() { case $1 in full-cone|none) echo "Endpoint Independent Filtering" ;; restricted-cone) echo "NAT with Address Dependent Filtering" ;; *) echo "Address and Port Dependent Filtering" ;; esac; }
for h in a1 b1; do
  t=$NATLAB_NAT_A; [[ $h == b1 ]] && t=$NATLAB_NAT_B
  note "### RFC 5780 discovery from $h ($t)"
  hip=$A1; [[ $h == b1 ]] && hip=$B1
  # -L binds the local address: without it natdiscovery compares with 0.0.0.0
  # and can never report "No NAT"
  x "$h" turnutils_natdiscovery -m -f -L "$hip" "$SRV"
  got=$(grep -E "^(No NAT|NAT with)" <<<"$OUT" | tr '\n' ';')
  note "summary: $got"
  [[ $OUT == *"$(exp_map "$t")"* && $OUT == *"$(exp_filt "$t")"* ]]
  result $? "turnutils_natdiscovery $h ($t): $got"
  note "### classic RFC 3489 test from $h (stun client -> stund)"
  x "$h" stun "$NATLAB_STUND_HOST"
  note "summary: $(grep -E '^Primary' <<<"$OUT")"
  [[ $OUT == *Primary:* ]]; result $? "stun (stund) $h ($t): $(grep -E '^Primary' <<<"$OUT" | sed 's/Primary: //; s/[[:space:]]*$//')"
done

# ----------------------------------------------------- UPnP / NAT-PMP / PCP -
if "$L" exec rtrA ss -Hltn 2>/dev/null | grep -q ":5000 "; then
  check "upnpc (miniupnpc) status via rtrA IGD"  a1 upnpc -i -s
  [[ $OUT == *"ExternalIPAddress = $WANA"* ]]; result $? "upnpc reports ExternalIPAddress = $WANA"
  check "upnpc add UDP mapping 46000 -> a1:46000" a1 upnpc -i -e natlab-verify -a "$A1" 46000 46000 UDP 600
  check "upnpc add TCP mapping 46001 -> a1:46001" a1 upnpc -i -e natlab-verify -a "$A1" 46001 46001 TCP 600
  note "### upnpc list shows both mappings"
  x a1 upnpc -i -l
  [[ $OUT == *"UDP 46000->$A1:46000"* && $OUT == *"TCP 46001->$A1:46001"* ]]; result $? "upnpc -l lists UDP 46000 and TCP 46001"
  note "\$ nat-lab exec rtrA nft list chain inet natlab prerouting_miniupnpd"; "$L" exec rtrA nft list chain inet natlab prerouting_miniupnpd >> "$LOG" 2>&1
  deliver "UPnP UDP mapping forwards pub1 -> $WANA:46000 -> a1" yes a1 "timeout 2 socat -u UDP4-RECV:46000 STDOUT" pub1 "socat -u STDIN UDP4-SENDTO:$WANA:46000"
  deliver "UPnP TCP mapping forwards pub1 -> $WANA:46001 -> a1" yes a1 "timeout 2 socat -u TCP4-LISTEN:46001,reuseaddr STDOUT" pub1 "socat -u STDIN TCP4:$WANA:46001"
  check "upnpc delete UDP mapping" a1 upnpc -i -d 46000 UDP
  check "upnpc delete TCP mapping" a1 upnpc -i -d 46001 TCP
  note "### upnpc list after delete"
  x a1 upnpc -i -l
  [[ $OUT != *"46000->"* && $OUT != *"46001->"* ]]; result $? "mappings gone after upnpc -d"
  deliver "after delete: pub1 -> $WANA:46000 no longer forwarded" no a1 "timeout 2 socat -u UDP4-RECV:46000 STDOUT" pub1 "socat -u STDIN UDP4-SENDTO:$WANA:46000"

  check "natpmpc: public address request" a1 natpmpc -g "$GWA"
  [[ $OUT == *"Public IP address : $WANA"* ]]; result $? "NAT-PMP reports public address $WANA"
  check "natpmpc: map UDP 47000 -> a1:47000" a1 natpmpc -g "$GWA" -a 47000 47000 udp 600
  [[ $OUT == *"Mapped public port 47000 protocol UDP to local port 47000"* ]]; result $? "NAT-PMP mapping granted"
  deliver "NAT-PMP mapping forwards pub1 -> $WANA:47000 -> a1" yes a1 "timeout 2 socat -u UDP4-RECV:47000 STDOUT" pub1 "socat -u STDIN UDP4-SENDTO:$WANA:47000"
  check "natpmpc: delete mapping (lifetime 0)" a1 natpmpc -g "$GWA" -a 47000 47000 udp 0

  check "PCP MAP (tools/pcp-map.cjs) TCP 47001 -> a1:47001" a1 node tools/pcp-map.cjs "$GWA" 47001 tcp 300 47001
  [[ $OUT == *'"result":"SUCCESS"'* && $OUT == *"\"externalAddress\":\"$WANA\""* ]]; result $? "PCP MAP result SUCCESS with external address $WANA"
  deliver "PCP mapping forwards pub1 -> $WANA:47001 -> a1 (TCP)" yes a1 "timeout 2 socat -u TCP4-LISTEN:47001,reuseaddr STDOUT" pub1 "socat -u STDIN TCP4:$WANA:47001"
  # delete it again through UPnP so the next run starts clean
  "$L" exec a1 upnpc -i -d 47001 TCP >/dev/null 2>&1

  if [[ $NATLAB_V6_FIREWALL == on ]]; then
    check "UPnP IGDv2 IPv6 pinhole pub1 -> a1 UDP 48000 (upnpc -6 -A)" a1 upnpc -6 -i -A "$NATLAB_PUB1_IP6" 0 "$NATLAB_A1_IP6" 48000 UDP 600
    phid=$(grep -oE "Pinhole ID = [0-9]+" <<<"$OUT" | awk '{print $4}')
    deliver "IPv6 pinhole lets pub1 in" yes a1 "timeout 2 socat -u UDP6-RECV:48000 STDOUT" pub1 "socat -u STDIN UDP6-SENDTO:[$NATLAB_A1_IP6]:48000"
    deliver "IPv6 pinhole does not let srv in (remote host bound)" no a1 "timeout 2 socat -u UDP6-RECV:48000 STDOUT" srv "socat -u STDIN UDP6-SENDTO:[$NATLAB_A1_IP6]:48000"
    check "upnpc -6 -D deletes the pinhole" a1 upnpc -6 -i -D "${phid:-0}"
  fi
else
  note "miniupnpd not running on rtrA: UPnP/NAT-PMP/PCP checks skipped"
fi

# ------------------------------------------------------------------ TURN ----
note "### TURN allocation + relay: turnutils_peer on pub1, turnutils_uclient on a1"
note "\$ nat-lab exec pub1 turnutils_peer -L $PUB1 -p 3480 &"
"$L" exec pub1 turnutils_peer -L "$PUB1" -p 3480 > "$TMP/peer" 2>&1 &
peerpid=$!
sleep 0.3
x a1 timeout 20 turnutils_uclient -v -u "$NATLAB_TURN_USER" -w "$NATLAB_TURN_PASS" -e "$PUB1" -r 3480 -n 20 -m 2 -l 120 "$NATLAB_TURN_HOST"
relay=$(grep -oE "Received relay addr: [0-9.]+:[0-9]+" <<<"$OUT" | head -1 | awk '{print $4}')
[[ $OUT == *"tot_send_msgs=40, tot_recv_msgs=40"* && $OUT == *"Total lost packets 0 "* && $relay == "$NATLAB_TURN_HOST:"* ]]
result $? "TURN/UDP: allocation (relay $relay), 2 clients, 40 messages relayed a1 <-> relay <-> pub1, 0 lost"
x a1 timeout 20 turnutils_uclient -t -u "$NATLAB_TURN_USER" -w "$NATLAB_TURN_PASS" -e "$PUB1" -r 3480 -n 20 -m 2 -l 120 "$NATLAB_TURN_HOST"
[[ $OUT == *"tot_send_msgs=40, tot_recv_msgs=40"* && $OUT == *"Total lost packets 0 "* ]]
result $? "TURN over TCP to the server: 40 messages relayed, 0 lost"
x a1 timeout 10 turnutils_uclient -u "$NATLAB_TURN_USER" -w wrong-password -e "$PUB1" -r 3480 -n 2 -m 1 -l 120 "$NATLAB_TURN_HOST"
[[ $OUT != *"tot_recv_msgs=2"* ]]; result $? "TURN with a wrong password is refused"
kill "$peerpid" 2>/dev/null; wait "$peerpid" 2>/dev/null

# ------------------------------------------------------------------ MQTT ----
deliver "MQTT pub a1 -> broker -> sub b1" yes b1 "timeout 5 mosquitto_sub -h $NATLAB_MQTT_HOST -t natlab/verify -C 1" a1 "sleep 0.3; mosquitto_pub -h $NATLAB_MQTT_HOST -t natlab/verify -s"
deliver "MQTT over IPv6 pub b1 -> broker -> sub a1" yes a1 "timeout 5 mosquitto_sub -h $NATLAB_STUN6_HOST -t natlab/verify6 -C 1" b1 "sleep 0.3; mosquitto_pub -h $NATLAB_STUN6_HOST -t natlab/verify6 -s"

echo "log: ${LOG#"$LAB_DIR"/}"
note "$PASS passed, $FAIL failed"
echo "$PASS passed, $FAIL failed"
((FAIL == 0))
