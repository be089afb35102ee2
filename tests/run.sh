#!/usr/bin/env bash
# sigvault's test command (README.md; .ci/run calls exactly this).
#
#   tests/run.sh            lint + the whole test suite + end-to-end with real clients + the
#                           packaging check
#   tests/run.sh bench      the benchmarks (prints BENCH lines)
#   tests/run.sh cargo ARGS one cargo command in the same environment, e.g.
#                           tests/run.sh cargo test --test tlog_service
#   tests/run.sh fuzz       the long fuzz runs (tests/fuzz.rs in release: 10^7 executions per
#                           target, a fresh seed; prints FUZZ lines; SIGVAULT_FUZZ_* to change)
#   tests/run.sh packaging  only the packaging checks (packaging/check-packages.sh, with the
#                           private MariaDB it uses to run the services as their units would,
#                           then packaging/check-boot.sh, the booted install check)
#
# On a fresh Debian 12 machine, as root, it installs what is missing (softhsm2, mariadb-server,
# opensc, openssl), then starts a PRIVATE MariaDB in a temporary data dir on a free loopback port
# and a PRIVATE SoftHSM2 token dir, hands their locations to the tests through environment
# variables, runs cargo, and stops and removes both. It never touches a system MariaDB or the
# system token dir.
#
# Variables handed to the tests:
#   SIGVAULT_TEST_MYSQL_URL       mysql://user:password@127.0.0.1:PORT (may create databases)
#   SIGVAULT_TEST_DB_PID          that MariaDB's pid (the benchmarks report its CPU time)
#   SOFTHSM2_CONF                 private SoftHSM config; tokens live in $SIGVAULT_TEST_WORK/tokens
#   SIGVAULT_TEST_PKCS11_MODULE   the SoftHSM2 PKCS#11 module
#   SIGVAULT_TEST_WORK            scratch dir removed at the end
#   SIGVAULT_TEST_REQUIRE=1       tests that need these fail instead of skipping
set -euo pipefail

mode=${1:-test}
cd "$(dirname "$0")/.."
repo=$(pwd)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'tests/run.sh: %s\n' "$*" >&2; exit 1; }

# --- 1. what the tests need --------------------------------------------------------------------
# shellcheck source=tests/deps.sh
. "$repo/tests/deps.sh"
ensure_debian_packages softhsm2 mariadb-server mariadb-client opensc openssl python3 python3-pip python3-venv curl
# The second PKCS#11 implementation (tests/tpm2.sh): tpm2-pkcs11 over the swtpm simulator, with
# tpm2-abrmd as its resource manager on a private D-Bus bus.
case "$mode" in test | bench)
  ensure_debian_packages swtpm swtpm-tools tpm2-abrmd libtss2-tcti-tabrmd0 tpm2-tools \
    libtpm2-pkcs11-1 libtpm2-pkcs11-tools dbus-daemon ;;
esac
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
# Third-party checkers and peers the tests use: pyca/cryptography (PyPI) to parse certificates
# and verify SCTs, and a local OpenID Connect provider (oauth2-mock-server, npm).
python3 -c 'import cryptography' 2>/dev/null \
  || python3 -m pip install --quiet 'cryptography>=42' \
  || die "cannot install the Python package cryptography"
# python-tuf's ngclient (PyPI `tuf`, pinned in tests/clients/tuf/requirements.txt), the stock
# client tests/tuf.rs updates from sigvault's TUF repository with; a venv under target/ so that
# it is made once per checkout.
TUF_VENV=$repo/target/tuf-client-venv
if ! cmp -s tests/clients/tuf/requirements.txt "$TUF_VENV/requirements.txt"; then
  say "installing python-tuf ($(grep -v '^#' tests/clients/tuf/requirements.txt | tr '\n' ' ')) into $TUF_VENV"
  rm -rf "$TUF_VENV"
  python3 -m venv "$TUF_VENV" \
    && "$TUF_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/clients/tuf/requirements.txt \
    && cp tests/clients/tuf/requirements.txt "$TUF_VENV/requirements.txt" \
    || die "cannot install python-tuf into $TUF_VENV"
fi
export SIGVAULT_TEST_TUF_PYTHON=$TUF_VENV/bin/python
command -v node >/dev/null || ensure_debian_packages nodejs npm
if [ ! -d tests/idp/node_modules/oauth2-mock-server ] || [ tests/idp/package-lock.json -nt tests/idp/node_modules ]; then
  say "installing the test OpenID provider (npm ci in tests/idp)"
  (cd tests/idp && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in tests/idp failed"
fi

MODULE=${SIGVAULT_TEST_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
[ -e "$MODULE" ] || die "SoftHSM2 module $MODULE missing after install"

# --- 2. private scratch space, cleaned up whatever happens -----------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sigvault-test.XXXXXX")
DB_PID=
cleanup() {
  local rc=$?
  if [ -n "$DB_PID" ] && kill -0 "$DB_PID" 2>/dev/null; then
    mariadb-admin --no-defaults --socket="$WORK/mysqld.sock" -uroot shutdown >/dev/null 2>&1 \
      || kill "$DB_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$DB_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$DB_PID" 2>/dev/null || true
  fi
  if [ $rc -ne 0 ] && [ -f "$WORK/mariadb.err" ]; then
    echo "--- last lines of the private MariaDB log ---" >&2
    tail -n 20 "$WORK/mariadb.err" >&2 || true
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM

# --- 3. a private MariaDB on a free loopback port --------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
say "starting a private MariaDB on 127.0.0.1:$PORT (data in $WORK/db)"
mariadb-install-db --no-defaults --user=root --datadir="$WORK/db" --skip-test-db \
  --auth-root-authentication-method=socket >"$WORK/install-db.log" 2>&1 \
  || { cat "$WORK/install-db.log" >&2; die "mariadb-install-db failed"; }
# The server settings operators install (config/mariadb.cnf), and nothing from the system's files.
mariadbd --defaults-file="$repo/config/mariadb.cnf" --user=root --datadir="$WORK/db" \
  --socket="$WORK/mysqld.sock" --pid-file="$WORK/mysqld.pid" --port="$PORT" \
  --bind-address=127.0.0.1 --skip-name-resolve --log-error="$WORK/mariadb.err" --skip-log-bin \
  --max-connections=500 >/dev/null 2>&1 &
DB_PID=$!
for i in $(seq 1 300); do
  mariadb-admin --no-defaults --socket="$WORK/mysqld.sock" -uroot ping >/dev/null 2>&1 && break
  kill -0 "$DB_PID" 2>/dev/null || die "the private MariaDB exited during start-up"
  [ "$i" = 300 ] && die "the private MariaDB did not answer within 30 s"
  sleep 0.1
done
DB_PASS=$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
mariadb --no-defaults --socket="$WORK/mysqld.sock" -uroot <<SQL
CREATE USER 'sigvault_test'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON *.* TO 'sigvault_test'@'127.0.0.1' WITH GRANT OPTION;
SQL
export SIGVAULT_TEST_MYSQL_URL="mysql://sigvault_test:$DB_PASS@127.0.0.1:$PORT"
export SIGVAULT_TEST_DB_PID="$DB_PID"

# --- 4. a private SoftHSM2 token directory ----------------------------------------------------
mkdir -m 700 "$WORK/tokens"
cat >"$WORK/softhsm2.conf" <<CONF
directories.tokendir = $WORK/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF="$WORK/softhsm2.conf"
export SIGVAULT_TEST_PKCS11_MODULE="$MODULE"
export SIGVAULT_TEST_WORK="$WORK"
export SIGVAULT_TEST_REQUIRE=1

# Write back the private MariaDB's dirty pages (at most 60 s), then restore its flushing settings.
settle_db() {
  local sql=(mariadb --no-defaults --socket="$WORK/mysqld.sock" -uroot -N -B)
  local pct dirty i
  pct=$("${sql[@]}" -e "SELECT @@innodb_max_dirty_pages_pct")
  "${sql[@]}" -e "SET GLOBAL innodb_max_dirty_pages_pct = 0"
  for i in $(seq 1 600); do
    dirty=$("${sql[@]}" -e "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS
      WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_DIRTY'")
    [ "$dirty" -lt 100 ] && break
    sleep 0.1
  done
  "${sql[@]}" -e "SET GLOBAL innodb_max_dirty_pages_pct = $pct"
  say "MariaDB settled: $dirty dirty pages left after $((i / 10)) s"
}

# --- 5. run -------------------------------------------------------------------------------------
# A clean checkout gains nothing from incremental artifacts; they only take disk.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
say "disk: $(df -h --output=avail "$repo" | tail -n 1 | tr -d ' ') free where target/ lives, $(df -h --output=avail "$WORK" | tail -n 1 | tr -d ' ') in $WORK"
case "$mode" in
  test)
    say "cargo fmt --check"
    cargo fmt --all -- --check
    say "cargo clippy --all-targets -- -D warnings"
    cargo clippy --all-targets --quiet -- -D warnings
    say "cargo test"
    cargo test --all-targets
    say "target/ holds $(du -sh target 2>/dev/null | cut -f1)"
    # End to end: README's first command starts the whole stack, then sigstore-python (PyPI),
    # sigstore-js and @sigstore/cli (npm) sign and verify against it.
    say "end-to-end with stock Sigstore clients (tests/e2e.sh)"
    SIGVAULT_BIN="$repo/target/debug/sigvault" tests/e2e.sh
    # The same stack on a second, different PKCS#11 implementation: the ceremony in tpm2-pkcs11
    # tokens, every service signing through them, the clients end to end, the HSM watchdog.
    say "the stack on tpm2-pkcs11 over swtpm (tests/tpm2.sh)"
    SIGVAULT_BIN="$repo/target/debug/sigvault" tests/tpm2.sh
    # The kill soak's short form: the services and MariaDB SIGKILLed under load, nothing
    # acknowledged lost or moved, no fork (tests/kill-soak.sh 100 is the long one).
    say "kill soak, short form (tests/kill-soak.sh ${SIGVAULT_SOAK_KILLS:-6})"
    SIGVAULT_BIN="$repo/target/debug/sigvault" tests/kill-soak.sh "${SIGVAULT_SOAK_KILLS:-6}"
    # Packages: build the .deb and .rpm, inspect them, install the .deb into a clean Debian 12
    # root (debootstrap), check the units, remove and purge. SIGVAULT_SKIP_PACKAGING=1 skips it
    # for quick local runs; CI never sets it.
    if [ "${SIGVAULT_SKIP_PACKAGING:-0}" = 1 ] && [ "${CI:-}" != true ]; then
      say "packaging check skipped (SIGVAULT_SKIP_PACKAGING=1)"
    else
      say "packaging check"
      packaging/check-packages.sh
      # The .rpm installed into a clean root with rpm --root, scriptlets run, then erased.
      packaging/check-rpm.sh
      # The .deb on a Debian 12 system systemd really boots (systemd-nspawn): README's "Install
      # on a VM" followed inside, the units, their sandbox, restarts, a power cycle and purge.
      say "booted install check"
      packaging/check-boot.sh
    fi
    ;;
  bench)
    say "cargo bench (release build)"
    cargo bench --no-run --quiet --bench hsm_sign --bench tlog --bench services --bench rekor --bench tsa
    # Each bench starts on a settled database: what the one before left dirty in the buffer
    # pool is written back first, not while the next one measures.
    # hsm_sign on a SoftHSM2 token and, in the same run, on a TPM token (tests/tpm2.sh starts
    # a private one for it).
    tests/tpm2.sh --bench
    for b in tsa rekor services tlog; do
      settle_db
      cargo bench --quiet --bench "$b"
    done
    ;;
  fuzz)
    # Every parser that sees untrusted bytes (src/fuzz.rs), 10^7 mutated inputs each; a crash
    # is saved under target/fuzz-crashes/ and fails the run. The seed is printed: rerun one
    # with SIGVAULT_FUZZ_SEED.
    say "fuzzing (cargo test --release --test fuzz)"
    SIGVAULT_FUZZ_EXECS=${SIGVAULT_FUZZ_EXECS:-10000000} SIGVAULT_FUZZ_SEED=${SIGVAULT_FUZZ_SEED:-$(date +%s)} \
      cargo test --release --test fuzz
    ;;
  cargo)
    shift
    cargo "$@"
    ;;
  packaging)
    packaging/check-packages.sh
    packaging/check-rpm.sh
    packaging/check-boot.sh
    ;;
  *) die "unknown mode '$mode' (use: test | bench | fuzz | cargo ARGS | packaging)" ;;
esac
