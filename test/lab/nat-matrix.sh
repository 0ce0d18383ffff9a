#!/usr/bin/env bash
# nat-matrix.sh -- exercise every NAT type of the lab with real clients.
#
#   ./nat-matrix.sh [discovery|punch|all]     (default all)
#
# discovery: for each type T, `nat-lab up --nat-a T --nat-b T`, then from a1
#   turnutils_natdiscovery -m -f (RFC 5780, coturn), stun (RFC 3489, stund)
#   and turnutils_natdiscovery -H (hairpinning); `nat-lab down`. Also times
#   every up/down. Writes results/nat-discovery.md and results/timings.txt.
# punch: for each pair (rtrA type, rtrB type), a UDP hole-punch between a1
#   and b1 with tools/udp-punch.cjs. Writes results/punch-matrix.md.
# Raw command outputs go to results/nat-matrix.log.
set -uo pipefail
LAB_DIR=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
L="$LAB_DIR/nat-lab"
cd "$LAB_DIR"
TYPES=(full-cone restricted-cone port-restricted symmetric firewall none)
RES=${NATLAB_RESULTS:-$LAB_DIR/results}
mkdir -p "$RES"
RAW=$RES/nat-matrix.log
what=${1:-all}
[[ $what == all || $what == discovery ]] && : > "$RAW"
[[ $what == punch ]] && echo "" >> "$RAW"
export NATLAB_QUIET=1

now() { date +%s.%N; }
dt() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b-a}'; }
leftovers() { # namespaces / processes / state left after down
  local n p
  n=$(ip netns list | grep -c '^natlab-' || true)
  p=$(ps -eo stat=,args= | awk '$1 !~ /Z/' | grep -cE '(turnserver|stund|mosquitto|miniupnpd) ' || true)
  echo "ns=$n procs=$p state=$([[ -e /run/natlab ]] && echo present || echo gone)"
}

if [[ $what == all || $what == discovery ]]; then
  {
    echo "| configured (rtrA) | natdiscovery mapping | natdiscovery filtering | stund classic (RFC 3489) | hairpin (-H) |"
    echo "|---|---|---|---|---|"
  } > "$RES/nat-discovery.md"
  echo "# up/down wall times (s) and what down left behind" > "$RES/timings.txt"
  for t in "${TYPES[@]}"; do
    t0=$(now); "$L" up --nat-a "$t" --nat-b "$t" || { echo "up failed for $t" >&2; exit 1; }; t1=$(now)
    a1ip=$("$L" env | sed -n 's/^NATLAB_A1_IP4=//p')
    # -L: bind the local address explicitly, otherwise natdiscovery compares the
    # mapped address with 0.0.0.0 and never reports "No NAT"
    echo "=== $t: nat-lab exec a1 turnutils_natdiscovery -m -f -L $a1ip 203.0.113.10" >> "$RAW"
    out=$("$L" exec a1 timeout 20 turnutils_natdiscovery -m -f -L "$a1ip" 203.0.113.10 2>&1); echo "$out" >> "$RAW"
    m=$(grep -E "^(No NAT|NAT with).*Mapping" <<<"$out" | sed 's/!$//' | head -1)
    f=$(grep -E "^(No NAT|NAT with).*Filtering" <<<"$out" | sed 's/!$//' | head -1)
    echo "=== $t: nat-lab exec a1 stun 203.0.113.12" >> "$RAW"
    out=$("$L" exec a1 timeout 20 stun 203.0.113.12 2>&1); echo "$out" >> "$RAW"
    c=$(grep -E "^Primary" <<<"$out" | sed 's/Primary: //; s/[[:space:]]*$//')
    echo "=== $t: nat-lab exec a1 turnutils_natdiscovery -H 203.0.113.10" >> "$RAW"
    out=$("$L" exec a1 timeout 20 turnutils_natdiscovery -H 203.0.113.10 2>&1); echo "$out" >> "$RAW"
    if grep -q "successful hairpinning" <<<"$out"; then hp=yes; else hp=no; fi
    echo "| $t | ${m:-?} | ${f:-?} | ${c:-?} | $hp |" >> "$RES/nat-discovery.md"
    t2=$(now); "$L" down; t3=$(now)
    sleep 1
    echo "$t: up $(dt "$t0" "$t1")  down $(dt "$t2" "$t3")  after-down: $(leftovers)" >> "$RES/timings.txt"
    echo "discovery $t done" >&2
  done
  # the same once more with hairpin NAT enabled on a full-cone router
  "$L" up --nat-a full-cone --nat-b full-cone --hairpin on
  out=$("$L" exec a1 timeout 20 turnutils_natdiscovery -H 203.0.113.10 2>&1)
  echo "=== full-cone --hairpin on: turnutils_natdiscovery -H" >> "$RAW"; echo "$out" >> "$RAW"
  out2=$("$L" exec a1 timeout 20 stun 203.0.113.12 2>&1); echo "$out2" >> "$RAW"
  if grep -q "successful hairpinning" <<<"$out"; then hp=yes; else hp=no; fi
  echo "| full-cone \`--hairpin on\` | (as above) | (as above) | $(grep -E '^Primary' <<<"$out2" | sed 's/Primary: //; s/[[:space:]]*$//') | $hp |" >> "$RES/nat-discovery.md"
  "$L" down
fi

if [[ $what == all || $what == punch ]]; then
  {
    printf '| rtrA \\ rtrB |'; for tb in "${TYPES[@]}"; do printf ' %s |' "$tb"; done; echo
    printf '|---|'; for tb in "${TYPES[@]}"; do printf '%s' '---|'; done; echo
  } > "$RES/punch-matrix.md"
  for ta in "${TYPES[@]}"; do
    row="| **$ta** |"
    for tb in "${TYPES[@]}"; do
      "$L" up --nat-a "$ta" --nat-b "$tb" --upnp-a off || exit 1
      d=$(mktemp -d -t natlab-punch.XXXXXX)
      "$L" exec a1 node tools/udp-punch.cjs a1 b1 "$d" 203.0.113.10 3 > "$d/a1.out" 2>&1 &
      apid=$!
      "$L" exec b1 node tools/udp-punch.cjs b1 a1 "$d" 203.0.113.10 3 > "$d/b1.out" 2>&1
      wait "$apid"
      echo "=== punch $ta x $tb" >> "$RAW"; cat "$d/a1.out" "$d/b1.out" >> "$RAW"
      if grep -q '"ok":true' "$d/a1.out" && grep -q '"ok":true' "$d/b1.out"; then cell=ok; else cell=FAIL; fi
      row+=" $cell |"
      rm -rf "$d"
      "$L" down
    done
    echo "$row" >> "$RES/punch-matrix.md"
    echo "punch row $ta done" >&2
  done
fi
[[ -f $RES/nat-discovery.md && $what != punch ]] && cat "$RES/nat-discovery.md"
[[ -f $RES/punch-matrix.md && $what != discovery ]] && cat "$RES/punch-matrix.md"
exit 0
