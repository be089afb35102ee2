#!/usr/bin/env bash
# SIGVAULT_INIT_TOKEN for the tpm2-pkcs11 module (tests/tpm2.sh):
#
#   tests/tpm2/init-token.sh LABEL PIN_FILE
#
# Creates the tpm2-pkcs11 token LABEL under the store's first primary key, with the user PIN in
# PIN_FILE and a random SO PIN, unless a token with that label exists. Needs TPM2_PKCS11_STORE
# and TPM2TOOLS_TCTI (tpm2_ptool drives the TPM through tpm2-tools), as tests/tpm2.sh exports.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 LABEL PIN_FILE" >&2; exit 2; }
label=$1
pin_file=$2
# Read whole before searching: grep -q stopping early would fail the pipe under pipefail.
tokens=$(tpm2_ptool listtokens --pid 1)
if grep -Eq "^[[:space:]]*label: $label$" <<<"$tokens"; then
  echo "token $label exists; keeping it"
  exit 0
fi
# tpm2_ptool takes PINs only as arguments; this is a test token in a private store.
tpm2_ptool addtoken --pid 1 --label "$label" --userpin "$(cat "$pin_file")" \
  --sopin "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" >/dev/null
echo "initialised tpm2-pkcs11 token $label"
