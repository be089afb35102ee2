# The test scripts' checks (sourced by tests/e2e.sh, tests/lifecycle.sh and tests/tpm2.sh): each
# prints one line, `ok   NAME` or `FAIL NAME` (with the tail of what the command said), and
# counts into $pass and $fail; the script ends with `[ $fail -eq 0 ]`.
#
#   expect_ok NAME CMD...                the command must succeed
#   expect_fail NAME CMD...              it must fail
#   expect_fail_saying NAME REGEX CMD... it must fail, and say why (REGEX, case-insensitive)
# shellcheck shell=bash

pass=0
fail=0
ok() { pass=$((pass + 1)); printf 'ok   %s\n' "$*"; }
bad() { fail=$((fail + 1)); printf 'FAIL %s\n' "$*"; }
expect_ok() {
  local name=$1; shift
  if out=$("$@" 2>&1); then ok "$name"; else bad "$name"; printf '%s\n' "$out" | tail -n 15 | sed 's/^/     | /'; fi
}
expect_fail() {
  local name=$1; shift
  if out=$("$@" 2>&1); then bad "$name (it was accepted)"; printf '%s\n' "$out" | tail -n 5 | sed 's/^/     | /'; else ok "$name"; fi
}
expect_fail_saying() {
  local name=$1 why=$2; shift 2
  if out=$("$@" 2>&1); then
    bad "$name (it was accepted)"; printf '%s\n' "$out" | tail -n 5 | sed 's/^/     | /'
  elif grep -Eqi -- "$why" <<<"$out"; then
    ok "$name"
  else
    bad "$name (it failed, but not saying /$why/)"; printf '%s\n' "$out" | tail -n 5 | sed 's/^/     | /'
  fi
}
