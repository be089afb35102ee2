#!/usr/bin/env bash
# Development / test key ceremony on SoftHSM2.
#
#   softhsm/ceremony.sh STATE_DIR
#
# Creates, under STATE_DIR:
#   softhsm2.conf        a private SoftHSM config whose token dir is STATE_DIR/tokens
#   tokens/              one SoftHSM token per role: root, issuing CA, ctlog, rekor, tlog, tsa
#                        (the tlog's holds the Rekor v2 log key too: the tlog signs with it)
#   secrets/<role>.pin   random user PINs (mode 0600); secrets/<role>.so-pin the SO PINs
#   ceremony.toml        the ceremony config (the same format production uses)
#   ceremony/            root.pem, issuing-ca.pem, ctlog.pub.pem, rekor.pub.pem, tlog.pub.pem,
#                        tsa.pem, rekor-v2.pub.pem, transcript.json  (written by `sigvault ceremony`)
#
# Running it again re-uses the tokens and PINs and never overwrites a key: `sigvault ceremony`
# refuses because the keys exist. A state dir whose ceremony ran before sigvault had a TSA or a
# Rekor v2 log gains them: the script adds the token and the `[ceremony.tsa]` or
# `[ceremony.rekor_v2]` section and runs `sigvault ceremony --add tsa` / `--add rekor-v2`, which
# touch no other key. Production runs `sigvault ceremony` against the system token
# directory or a real HSM module instead; see README.md "Production key ceremony".
#
# Environment: SIGVAULT (path of the sigvault binary; default: `sigvault` on PATH, else the
# repo's target/release or target/debug build), SIGVAULT_PKCS11_MODULE (default Debian's SoftHSM),
# SIGVAULT_TOKEN_PREFIX (token label prefix, default "sigvault-"). For another module than
# SoftHSM2 (tests/tpm2.sh): SIGVAULT_INIT_TOKEN, a command `CMD LABEL PIN_FILE` that creates the
# token LABEL with that user PIN unless it exists (its tool, not softhsm2-util, makes the
# token), and SIGVAULT_HSM_OPTIONS, TOML lines added to the config's [hsm] section.
set -euo pipefail
umask 077

die() { echo "ceremony.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 STATE_DIR"
[ -n "${SIGVAULT_INIT_TOKEN:-}" ] || command -v softhsm2-util >/dev/null \
  || die "softhsm2-util not found: apt-get install softhsm2"

mkdir -p "$1"
STATE_DIR=$(cd "$1" && pwd)
MODULE=${SIGVAULT_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
PREFIX=${SIGVAULT_TOKEN_PREFIX:-sigvault-}
[ -e "$MODULE" ] || die "PKCS#11 module $MODULE not found: apt-get install softhsm2 or set SIGVAULT_PKCS11_MODULE"

here=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${SIGVAULT:-}" ]; then
  BIN=$SIGVAULT
elif command -v sigvault >/dev/null; then
  BIN=$(command -v sigvault)
elif [ -x "$here/target/release/sigvault" ]; then
  BIN=$here/target/release/sigvault
elif [ -x "$here/target/debug/sigvault" ]; then
  BIN=$here/target/debug/sigvault
else
  die "sigvault binary not found: build it (cargo build --release) or set SIGVAULT=/path/to/sigvault"
fi

mkdir -p "$STATE_DIR/tokens" "$STATE_DIR/secrets"
chmod 700 "$STATE_DIR/tokens" "$STATE_DIR/secrets"

conf=$STATE_DIR/softhsm2.conf
if [ ! -f "$conf" ]; then
  cat >"$conf" <<CONF
# Private SoftHSM2 config written by sigvault's softhsm/ceremony.sh
directories.tokendir = $STATE_DIR/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
fi
export SOFTHSM2_CONF=$conf

newpin() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

# The slot list is read whole before it is searched: `softhsm2-util | grep -q` under pipefail
# fails when grep stops reading early (SIGPIPE), which made an existing token look missing and
# gave a second token the same label.
token_exists() {
  local slots
  slots=$(softhsm2-util --show-slots 2>/dev/null) || return 1
  grep -Eq "^[[:space:]]*Label:[[:space:]]+$1[[:space:]]*$" <<<"$slots"
}

for role in root issuing-ca ctlog rekor tlog tsa; do
  label=$PREFIX$role
  pin=$STATE_DIR/secrets/$role.pin
  sopin=$STATE_DIR/secrets/$role.so-pin
  [ -s "$pin" ] || { newpin >"$pin"; chmod 600 "$pin"; }
  [ -s "$sopin" ] || { newpin >"$sopin"; chmod 600 "$sopin"; }
  if [ -n "${SIGVAULT_INIT_TOKEN:-}" ]; then
    "$SIGVAULT_INIT_TOKEN" "$label" "$pin" || die "$SIGVAULT_INIT_TOKEN $label failed"
  elif token_exists "$label"; then
    echo "token $label exists; keeping it"
  else
    # softhsm2-util takes PINs only as arguments; this is a development ceremony on a private
    # token dir. The production ceremony (README.md) has the PIN holders type them instead.
    softhsm2-util --init-token --free --label "$label" \
      --pin "$(cat "$pin")" --so-pin "$(cat "$sopin")" >/dev/null
    echo "initialised token $label"
  fi
done

cfg=$STATE_DIR/ceremony.toml
if [ ! -f "$cfg" ]; then
  cat >"$cfg" <<CFG
# Ceremony config written by softhsm/ceremony.sh (reference: config/ceremony.toml)
[hsm]
module = "$MODULE"
${SIGVAULT_HSM_OPTIONS:-}

[ceremony]
output_dir = "$STATE_DIR/ceremony"

[ceremony.root]
key = "pkcs11:token=${PREFIX}root;object=root-ca"
pin = { file = "$STATE_DIR/secrets/root.pin" }
curve = "P-384"
subject = "CN=sigvault development root CA,O=sigvault"
validity_days = 3652

[ceremony.issuing_ca]
key = "pkcs11:token=${PREFIX}issuing-ca;object=issuing-ca"
pin = { file = "$STATE_DIR/secrets/issuing-ca.pin" }
curve = "P-256"
subject = "CN=sigvault development issuing CA,O=sigvault"
validity_days = 1826

[ceremony.ctlog]
key = "pkcs11:token=${PREFIX}ctlog;object=ctlog"
pin = { file = "$STATE_DIR/secrets/ctlog.pin" }

[ceremony.rekor]
key = "pkcs11:token=${PREFIX}rekor;object=rekor"
pin = { file = "$STATE_DIR/secrets/rekor.pin" }

[ceremony.tlog]
key = "pkcs11:token=${PREFIX}tlog;object=tlog"
pin = { file = "$STATE_DIR/secrets/tlog.pin" }
CFG
fi
if ! grep -q '^\[ceremony\.tsa\]' "$cfg"; then
  cat >>"$cfg" <<CFG

[ceremony.tsa]
key = "pkcs11:token=${PREFIX}tsa;object=tsa"
pin = { file = "$STATE_DIR/secrets/tsa.pin" }
subject = "CN=sigvault development timestamp authority,O=sigvault"
validity_days = 1826
CFG
fi
if ! grep -q '^\[ceremony\.rekor_v2\]' "$cfg"; then
  cat >>"$cfg" <<CFG

[ceremony.rekor_v2]
key = "pkcs11:token=${PREFIX}tlog;object=rekor-v2"
pin = { file = "$STATE_DIR/secrets/tlog.pin" }
CFG
fi

"$BIN" check-config "$cfg"
if [ -f "$STATE_DIR/ceremony/transcript.json" ] && { [ ! -f "$STATE_DIR/ceremony/tsa.pem" ] \
    || [ ! -f "$STATE_DIR/ceremony/rekor-v2.pub.pem" ]; }; then
  [ -f "$STATE_DIR/ceremony/tsa.pem" ] || "$BIN" ceremony --add tsa --config "$cfg"
  [ -f "$STATE_DIR/ceremony/rekor-v2.pub.pem" ] || "$BIN" ceremony --add rekor-v2 --config "$cfg"
  exit 0
fi
exec "$BIN" ceremony --config "$cfg"
