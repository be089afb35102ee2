#!/usr/bin/env bash
# sigvault's main job on a development machine (README.md, first command).
#
#   packaging/dev-stack.sh up      install what is missing, build, run the key ceremony into the
#                                  state dir (once), and show what was made
#   packaging/dev-stack.sh down    stop everything `up` started
#   packaging/dev-stack.sh status  show the state dir and what is running
#
# State dir: $SIGVAULT_STATE_DIR, default ${XDG_STATE_HOME:-$HOME/.local/state}/sigvault-dev.
# It holds the SoftHSM tokens (the private keys), the PINs (secrets/, mode 0600) and the public
# ceremony outputs (ceremony/). Delete it to start over with new keys.
#
# Today `up` stops after the ceremony: the services (tlog, ctlog, fulcio, rekor) join it as they
# are built.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
STATE=${SIGVAULT_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/sigvault-dev}

say() { printf '==> %s\n' "$*"; }
die() { printf 'dev-stack.sh: %s\n' "$*" >&2; exit 1; }

up() {
  # shellcheck source=tests/deps.sh
  . "$repo/tests/deps.sh"
  ensure_debian_packages softhsm2 opensc openssl
  command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
  say "building sigvault (release)"
  cargo build --release --quiet
  export SIGVAULT="$repo/target/release/sigvault"
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  if [ -f "$STATE/ceremony/transcript.json" ]; then
    say "ceremony already done in $STATE (keys are never regenerated; delete the dir to start over)"
  else
    say "running the key ceremony into $STATE"
    "$repo/softhsm/ceremony.sh" "$STATE"
  fi
  local c=$STATE/ceremony
  say "checking the CA chain with openssl"
  openssl verify -CAfile "$c/root.pem" "$c/issuing-ca.pem"
  echo
  echo "State dir:         $STATE"
  echo "  tokens/          SoftHSM2 tokens holding the private keys (SOFTHSM2_CONF=$STATE/softhsm2.conf)"
  echo "  secrets/         token PINs, mode 0600"
  echo "  ceremony/        root.pem issuing-ca.pem ctlog.pub.pem rekor.pub.pem tlog.pub.pem transcript.json"
  echo
  echo "Fingerprints (SHA-256 of the DER):"
  for f in root issuing-ca; do
    printf '  %-12s %s\n' "$f" "$(openssl x509 -in "$c/$f.pem" -noout -fingerprint -sha256 | cut -d= -f2)"
  done
  echo
  echo "Next: inspect a certificate:  openssl x509 -in $c/issuing-ca.pem -noout -text"
  echo "      read the transcript:     cat $c/transcript.json"
  echo "      run the tests:           tests/run.sh"
}

down() {
  # Nothing long-running is started yet; once services are, they are stopped here.
  say "nothing to stop: dev-stack.sh up starts no long-running process yet"
}

status() {
  echo "state dir: $STATE"
  if [ -f "$STATE/ceremony/transcript.json" ]; then
    echo "ceremony:  done ($(grep -m1 '"finished_at"' "$STATE/ceremony/transcript.json" | cut -d'"' -f4))"
  else
    echo "ceremony:  not done"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: $0 up | down | status" ;;
esac
