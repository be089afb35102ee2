#!/usr/bin/env bash
# The kill soak (README.md, "Crash safety: the kill soak"):
#
#   tests/kill-soak.sh [KILLS] [SEED]     default 100 kills, a seed from the clock (printed)
#
# Brings up a development stack in a fresh state dir (packaging/dev-stack.sh up), then
# tests/soak/kill_soak.py loads it through the real HTTP APIs (Rekor v1 and v2 uploads, Fulcio
# certificate requests through the CT log) while it SIGKILLs a random one of the tlog, rekor,
# rekor-v2, ctlog, fulcio or MariaDB KILLS times, restarting it as systemd would; after each
# round nothing acknowledged may be lost or moved and no tree may fork (`sigvault tlog verify`
# with every checkpoint handed out). Ends with
#   SOAK kills=<n> acknowledged=<n> lost=0 moved=0 forks=0
# tests/run.sh runs a short form (SIGVAULT_SOAK_KILLS, default 6) after the end-to-end tests.
# SIGVAULT_BIN selects the binary (default: a release build).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
KILLS=${1:-100}
SEED=${2:-$(date +%s)}
STATE=$(mktemp -d "${TMPDIR:-/tmp}/sigvault-soak.XXXXXX")
export SIGVAULT_STATE_DIR=$STATE
if [ -z "${SIGVAULT_BIN:-}" ]; then
  cargo build --release --quiet
  export SIGVAULT_BIN=$repo/target/release/sigvault
fi
cleanup() {
  local rc=$?
  packaging/dev-stack.sh down >/dev/null 2>&1 || true
  if [ $rc -ne 0 ]; then
    echo "kill soak failed (seed $SEED); the stack's logs are in $STATE/logs"
  else
    rm -rf "$STATE"
  fi
  exit $rc
}
trap cleanup EXIT
echo "==> kill soak: $KILLS kills, seed $SEED (state dir $STATE)"
SIGVAULT_SKIP_DEMO=1 packaging/dev-stack.sh up >"$STATE/up.log" 2>&1 || { tail -n 30 "$STATE/up.log"; exit 1; }
python3 tests/soak/kill_soak.py "$STATE" "$KILLS" "$SEED"
