#!/usr/bin/env bash
# install-deps.sh -- install the Debian packages the NAT lab needs, only those
# that are missing. Idempotent, non-interactive, safe to run on every CI job.
#
#   sudo bash test/lab/install-deps.sh [--no-update] [--with-debug] [--check]
#
#   --no-update   do not run `apt-get update` first (default: run it, but only
#                 when something has to be installed)
#   --with-debug  also install conntrack and tcpdump (inspection only)
#   --check       install nothing: list what is missing, exit 1 if anything is
#                 (needs no root)
#
# The stock services of coturn, mosquitto and miniupnpd are never left running
# in the root namespace: a policy-rc.d that refuses service starts is put in
# place for the install (unless one already exists), miniupnpd's debconf is
# preseeded with start_daemon=false, and on a systemd machine the units of
# packages installed by this run are disabled and stopped. The lab starts its
# own instances inside its namespaces (test/lab/nat-lab up).
#
# Exit status: 0 when every package is installed afterwards, 1 otherwise.
# If `apt-get update` fails (offline mirror) the script carries on with a
# warning; it then fails only if a package is still missing.
set -Eeuo pipefail

PACKAGES=(
  # what nat-lab itself uses: ip/ss/bridge, nft, sysctl/ps, setsid
  iproute2 nftables procps util-linux
  # daemons (miniupnpd is a wrapper and needs the nftables backend)
  coturn stun-server mosquitto miniupnpd miniupnpd-nftables
  # verification clients (verify.sh, nat-matrix.sh, tests)
  iputils-ping socat stun-client mosquitto-clients miniupnpc natpmpc
)
DEBUG_PACKAGES=(conntrack tcpdump)
# systemd units / init scripts shipped by the daemon packages
SERVICES=(coturn mosquitto miniupnpd)

UPDATE=1 CHECK=0
while (($#)); do
  case $1 in
    --no-update) UPDATE=0 ;;
    --check) CHECK=1 ;;
    --with-debug) PACKAGES+=("${DEBUG_PACKAGES[@]}") ;;
    -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-deps: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "install-deps: $*"; }

installed() { [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]; }
missing_pkgs() { local p; for p in "${PACKAGES[@]}"; do installed "$p" || echo "$p"; done; }

if ((CHECK)); then
  command -v dpkg-query >/dev/null || { say "no dpkg-query: not a Debian system" >&2; exit 1; }
  mapfile -t MISSING < <(missing_pkgs)
  if ((${#MISSING[@]})); then say "missing: ${MISSING[*]}"; exit 1; fi
  say "all ${#PACKAGES[@]} lab packages installed"; exit 0
fi

if ((EUID != 0)); then
  say "must run as root (apt-get install); re-run with sudo" >&2
  exit 1
fi
command -v dpkg-query >/dev/null && command -v apt-get >/dev/null || {
  say "this script needs a Debian/Ubuntu system (dpkg + apt-get)" >&2; exit 1; }

mapfile -t MISSING < <(missing_pkgs)
if ((${#MISSING[@]} == 0)); then
  say "all ${#PACKAGES[@]} lab packages already installed"
  exit 0
fi
say "missing: ${MISSING[*]}"

export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true
export NEEDRESTART_MODE=a

# Refuse service starts during the install (invoke-rc.d honours policy-rc.d,
# exit 101 = "action forbidden"). Keep an existing policy-rc.d as it is.
POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=0
cleanup() { if ((OWN_POLICY)); then rm -f "$POLICY"; fi; }
trap cleanup EXIT
if [[ ! -e $POLICY ]]; then
  printf '#!/bin/sh\n# temporary, written by p2pd test/lab/install-deps.sh\nexit 101\n' > "$POLICY"
  chmod 755 "$POLICY"
  OWN_POLICY=1
fi

# miniupnpd asks for its interfaces and whether to start at boot: never start it.
if command -v debconf-set-selections >/dev/null; then
  debconf-set-selections <<'EOF'
miniupnpd miniupnpd/start_daemon boolean false
miniupnpd miniupnpd/ip6script boolean false
miniupnpd miniupnpd/force_igd_desc_v1 boolean false
EOF
fi

if ((UPDATE)); then
  say "apt-get update"
  if ! apt-get update -qq; then
    echo "==================================================================" >&2
    echo "install-deps: WARNING: apt-get update failed (offline mirror?)." >&2
    echo "install-deps: trying to install from the existing package lists." >&2
    echo "==================================================================" >&2
  fi
fi

say "installing: ${MISSING[*]}"
rc=0
apt-get install -y -q --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  "${MISSING[@]}" || rc=$?
((rc == 0)) || say "apt-get install exited with $rc" >&2

# Stock services must not run in the root namespace. Without a running
# systemd, policy-rc.d above kept them from starting; the units are still
# enabled for the next boot, so disable them (systemctl disable works offline)
# and, on a running systemd, stop them too. Only for packages this run installed.
if command -v systemctl >/dev/null; then
  for s in "${SERVICES[@]}"; do
    for p in "${MISSING[@]}"; do
      [[ $p == "$s" ]] || continue
      if [[ -d /run/systemd/system ]]; then
        say "disabling and stopping the stock $s service (the lab runs its own)"
        systemctl disable --now "$s.service" >/dev/null 2>&1 || true
      else
        say "disabling the stock $s service (the lab runs its own)"
        systemctl disable "$s.service" >/dev/null 2>&1 || true
      fi
    done
  done
fi

mapfile -t STILL < <(missing_pkgs)
if ((${#STILL[@]})); then
  say "FAILED: still missing: ${STILL[*]}" >&2
  exit 1
fi
say "installed: ${MISSING[*]}"
