#!/bin/bash
# The appliance's backup and restore, one command each way (README.md "Backups and recovery").
# Installed as /usr/sbin/sigvault-backup and /usr/sbin/sigvault-restore (the name says which).
#
#   sigvault-backup ARCHIVE
#       on the running appliance, as root: one archive (tar.gz, mode 0600) of everything that
#       holds state: a consistent online dump of every sigvault database (mariadb-dump
#       --single-transaction: one snapshot of all of them, taken while the services run) with
#       its users and grants, the HSM token directory, /var/lib/sigvault (ceremony record, trust
#       files), /var/lib/sigvault-tuf, /etc/sigvault (configs, credentials: PINs and database
#       passwords, TLS keys), the MariaDB settings, sigvault drop-ins and units in
#       /etc/systemd/system, and, copied after the dump, the tlog's rollback-guard records
#       (/var/lib/sigvault-tlog).
#   sigvault-restore ARCHIVE [--checkpoint FILE]...
#       on a fresh install (the package and its recommends installed, nothing else), as root:
#       everything put back, the databases and their users created and loaded, the units that
#       were enabled enabled again and sigvault.target started. Each --checkpoint is a signed
#       checkpoint that left the appliance (a monitor's, a witness's, a client's); the restored
#       trees are audited against them (`sigvault tlog verify`) and the newest per tree is
#       written into the rollback guard's record, so that the tlog refuses to sequence a tree
#       the archive holds behind a checkpoint anyone holds (appending would fork the log).
#
# Exit status of the restore: 0 when every tree is in service; 3 when the appliance is restored
# and started but some tree is held back by the rollback guard (it is behind a head signed
# before the backup finished, or behind a --checkpoint): those trees are listed, and README
# "Backups and recovery" says what to do with them; other values: the restore failed.
#
# The archive holds every online PIN and the database passwords: it is written mode 0600;
# keep it encrypted and offline. The root CA's token is not in it when it was exported to
# offline custody (README "Install on a VM", step 2).
#
# Environment: SIGVAULT_MARIADB_OPTS, options for mariadb/mariadb-dump (default: none, i.e.
# root's socket authentication on the local server); SOFTHSM2_CONF as for softhsm2-util.
set -euo pipefail

ETC=/etc/sigvault
CRED=$ETC/credentials
STATE_TLOG=/var/lib/sigvault-tlog
read -r -a DBOPTS <<<"${SIGVAULT_MARIADB_OPTS:-}"

die() { echo "${0##*/}: $*" >&2; exit 1; }
say() { echo "${0##*/}: $*"; }

tokendir() {
  local d
  d=$(sed -n 's/^[[:space:]]*directories.tokendir[[:space:]]*=[[:space:]]*//p' \
    "${SOFTHSM2_CONF:-/etc/softhsm/softhsm2.conf}" 2>/dev/null | tail -n 1)
  echo "${d:-/var/lib/softhsm/tokens}"
}

# The databases the services use: the last path segment of each *-db-url credential.
# Prints "credential-file user password database" per line.
db_urls() {
  local f url rest userpass
  for f in "$CRED"/*-db-url; do
    [ -f "$f" ] || continue
    url=$(tr -d '\n' <"$f")
    case $url in mysql://*|mariadb://*) ;; *) die "$f: not a mysql:// URL";; esac
    rest=${url#*://}
    userpass=${rest%%@*}
    db=${rest##*/}; db=${db%%\?*}
    printf '%s %s %s %s\n' "$f" "${userpass%%:*}" "${userpass#*:}" "$db"
  done
}

sql() { mariadb "${DBOPTS[@]}" --batch --skip-column-names "$@"; }

backup() {
  [ $# = 1 ] || die "usage: sigvault-backup ARCHIVE"
  local out=$1 dbs=() db started t0 paths=() p u h
  [ "$(id -u)" = 0 ] || die "run as root"
  [ ! -e "$out" ] || die "$out exists; give a new file"
  umask 077
  tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/sigvault-backup.XXXXXX")
  trap 'rm -rf "${tmp:-}"' EXIT
  while read -r _ _ _ db; do dbs+=("$db"); done < <(db_urls)
  [ ${#dbs[@]} -gt 0 ] || die "no *-db-url credential in $CRED: nothing to dump"

  # 1. The databases: one mariadb-dump, one transaction (a consistent snapshot of all of them;
  # each tlog batch is one transaction, so the snapshot holds whole batches). Entries
  # acknowledged after this point are not in the archive.
  started=$(date -u +%FT%T.%NZ); t0=$(date +%s.%N)
  mariadb-dump "${DBOPTS[@]}" --single-transaction --quick --hex-blob --routines --triggers \
    --databases "${dbs[@]}" | gzip -c >"$tmp/databases.sql.gz"
  # Their users, as they are (password hashes included), with their grants.
  for db in "${dbs[@]}"; do
    sql -e "SELECT DISTINCT User, Host FROM mysql.db WHERE REPLACE(Db, '\\\\_', '_') = '$db'"
  done | sort -u | while read -r u h; do
    sql -e "SHOW CREATE USER '$u'@'$h'" | sed 's/$/;/' | sed 's/^CREATE USER /CREATE USER IF NOT EXISTS /'
    sql -e "SHOW GRANTS FOR '$u'@'$h'" | grep -v '^GRANT USAGE ON' | sed 's/$/;/'
  done >"$tmp/users.sql"
  say "databases ${dbs[*]} dumped (snapshot at $started, $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s)"

  # 2. The rollback guard's records, after the dump and a little more than the second by which
  # they may trail the database: they then cover every head signed up to the snapshot, and any
  # signed after it (the entries the dump lacks), so that the restored tlog refuses to append
  # to a tree that would fork from what it signed.
  sleep 2

  # 3. Files (owners by name: the users the package makes have other ids on another host).
  for p in "$ETC" /var/lib/sigvault /var/lib/sigvault-tuf "$STATE_TLOG" "$(tokendir)" \
      /etc/mysql/mariadb.conf.d/60-sigvault.cnf /etc/my.cnf.d/sigvault.cnf /etc/softhsm/softhsm2.conf \
      /etc/systemd/system/sigvault*; do
    [ -e "$p" ] && paths+=("${p#/}")
  done
  # (Lock files and the guard's half-written records are left out; a file that changes while
  # it is read, tar's status 1, is a lock or a record being replaced. So is the tlog's lease
  # holder name, instance-id: a restored appliance is another instance, and must not hold
  # leases under the name of one that may still run.)
  tar -C / --exclude='*.lock' --exclude='.*.head.tmp' --exclude='instance-id' --exclude='instance-id.tmp' --warning=no-file-changed --warning=no-file-removed \
    -cpf "$tmp/files.tar" "${paths[@]}" || [ $? = 1 ]

  {
    echo "sigvault-backup 1"
    echo "created $started"
    echo "host $(cat /proc/sys/kernel/hostname)"
    echo "package $(dpkg-query -W -f='${Version}' sigvault 2>/dev/null || rpm -q --qf '%{VERSION}-%{RELEASE}' sigvault 2>/dev/null || echo unknown)"
    echo "databases ${dbs[*]}"
    echo "enabled $(systemctl list-unit-files --state=enabled --no-legend 'sigvault*' 2>/dev/null | awk '{print $1}' | tr '\n' ' ')"
    for p in "$STATE_TLOG"/*.head; do
      [ -f "$p" ] && echo "guard $(basename "$p" .head) $(tr '\n' ' ' <"$p")"
    done
    echo "paths ${paths[*]}"
  } >"$tmp/MANIFEST"
  tar -C "$tmp" -czf "$out.part" MANIFEST users.sql databases.sql.gz files.tar
  chmod 0600 "$out.part"
  mv "$out.part" "$out"
  say "wrote $out ($(du -h "$out" | cut -f1), mode 0600: it holds the PINs and database passwords)"
  sed -n 's/^guard /  rollback guard: tree /p' "$tmp/MANIFEST"
}

# The trees of tlog.toml: "name origin" per line.
trees() {
  awk '/^\[\[tlog\.trees\]\]/ {if (n != "") print n, o; n = ""; o = ""; next}
       /^\[/ {if (n != "") print n, o; n = ""; o = ""; next}
       /^name[[:space:]]*=/ {sub(/^[^"]*"/, ""); sub(/".*/, ""); n = $0}
       /^origin[[:space:]]*=/ {sub(/^[^"]*"/, ""); sub(/".*/, ""); o = $0}
       END {if (n != "") print n, o}' "$ETC/tlog.toml"
}

restore() {
  [ $# -ge 1 ] || die "usage: sigvault-restore ARCHIVE [--checkpoint FILE]..."
  local archive=$1 cps=() f line user pass db name origin size root b64 rec held=0 r units
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --checkpoint) [ $# -ge 2 ] || die "--checkpoint needs a file"; [ -f "$2" ] || die "no file $2"; cps+=("$(realpath "$2")"); shift 2 ;;
      *) die "unknown argument $1 (usage: sigvault-restore ARCHIVE [--checkpoint FILE]...)" ;;
    esac
  done
  [ "$(id -u)" = 0 ] || die "run as root"
  [ -f "$archive" ] || die "no archive $archive"
  command -v sigvault >/dev/null || die "install the sigvault package first"
  command -v mariadb >/dev/null || die "no mariadb client (install mariadb-server, or set SIGVAULT_MARIADB_OPTS for a remote one)"
  umask 077
  tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/sigvault-restore.XXXXXX")
  trap 'rm -rf "${tmp:-}"' EXIT
  tar -C "$tmp" -xzf "$archive"
  grep -qx 'sigvault-backup 1' "$tmp/MANIFEST" || die "$archive is not a sigvault-backup archive"

  # A fresh install only: restoring over a live appliance would mix two histories.
  [ -z "$(ls -A "$CRED" 2>/dev/null)" ] || die "$CRED is not empty: restore onto a fresh install"
  [ -z "$(ls -A "$STATE_TLOG" 2>/dev/null)" ] || die "$STATE_TLOG is not empty: restore onto a fresh install"
  for db in $(sed -n 's/^databases //p' "$tmp/MANIFEST"); do
    [ -z "$(sql -e "SHOW DATABASES LIKE '$db'")" ] || die "database $db exists: restore onto a fresh install"
  done
  local td
  td=$(tokendir)
  if tar -tf "$tmp/files.tar" | grep -q "^${td#/}/[^/]"; then
    [ -z "$(ls -A "$td" 2>/dev/null)" ] || die "the token directory $td is not empty: restore onto a fresh install"
  fi
  say "restoring $archive: $(sed -n 's/^created /taken at /p' "$tmp/MANIFEST") on $(sed -n 's/^host //p' "$tmp/MANIFEST")"
  systemctl stop sigvault.target 2>/dev/null || true

  # Files, with their owners (by name) and modes; the configs replace the package's examples.
  tar -C / -xpf "$tmp/files.tar"
  if tar -tf "$tmp/files.tar" | grep -Eq '^etc/(mysql/mariadb.conf.d/60-sigvault.cnf|my.cnf.d/sigvault.cnf)$'; then
    systemctl restart mariadb 2>/dev/null || systemctl restart mysql 2>/dev/null || true
  fi
  systemctl daemon-reload

  # The databases, then their users and grants as they were.
  gzip -dc "$tmp/databases.sql.gz" | sql
  sql <"$tmp/users.sql"
  # The URLs still name their users: check that each connects.
  while read -r f user pass db; do
    sql -e "SELECT 1" >/dev/null || die "cannot reach the database server"
    mariadb --protocol=TCP -h 127.0.0.1 -u "$user" -p"$pass" -e "SELECT 1" "$db" >/dev/null 2>&1 ||
      say "warning: $user cannot log in to $db over 127.0.0.1 as $f says (a remote database? check it)"
  done < <(db_urls)
  say "databases $(sed -n 's/^databases //p' "$tmp/MANIFEST") loaded"

  # The checkpoints that left the appliance: the audit against them, and the newest per tree in
  # the rollback guard's record (when newer than the one the archive carries).
  if [ -f "$ETC/tlog.toml" ]; then
    local vargs=()
    for f in "${cps[@]}"; do vargs+=(--checkpoint "$f"); done
    say "sigvault tlog verify ${vargs[*]}"
    if ! CREDENTIALS_DIRECTORY=$CRED sigvault tlog verify --config "$ETC/tlog.toml" "${vargs[@]}"; then
      say "the audit found problems (above): trees behind a checkpoint will be held back"
    fi
    for f in "${cps[@]}"; do
      origin=$(sed -n 1p "$f"); size=$(sed -n 2p "$f"); b64=$(sed -n 3p "$f")
      name=$(trees | awk -v o="$origin" '{n = $1; sub(/^[^ ]+ /, "")} $0 == o {print n; exit}')
      [ -n "$name" ] || { say "warning: $f: no tree in tlog.toml has origin '$origin'"; continue; }
      case $size in ''|*[!0-9]*) say "warning: $f: not a checkpoint"; continue ;; esac
      rec=$STATE_TLOG/$name.head
      if [ -f "$rec" ] && [ "$(sed -n 's/^size //p' "$rec")" -ge "$size" ]; then continue; fi
      root=$(printf '%s' "$b64" | base64 -d | od -An -tx1 | tr -d ' \n')
      [ ${#root} = 64 ] || { say "warning: $f: not a checkpoint"; continue; }
      install -d -m 0700 -o sigvault-tlog "$STATE_TLOG"
      printf 'size %s\nroot %s\n' "$size" "$root" >"$rec.part"
      chown sigvault-tlog "$rec.part"; chmod 0600 "$rec.part"; mv "$rec.part" "$rec"
      say "tree '$name': the rollback guard now holds the checkpoint of $f (size $size)"
    done
  fi

  # Start what was enabled.
  units=$(sed -n 's/^enabled //p' "$tmp/MANIFEST")
  # shellcheck disable=SC2086
  [ -z "${units// /}" ] || systemctl enable $units
  systemctl start sigvault.target
  say "sigvault.target started"
  systemctl --no-pager --plain --no-legend list-units 'sigvault*' | sed 's/^/  /'

  # Which trees the tlog sequences, and which the rollback guard holds back.
  if [ -f "$ETC/tlog.toml" ] && ! command -v curl >/dev/null; then
    say "no curl here: read the tlog's /readyz to see which trees it sequences"
  elif [ -f "$ETC/tlog.toml" ]; then
    local listen
    listen=$(sed -n 's/^public_listen[[:space:]]*=[[:space:]]*"\(.*\)"/\1/p' "$ETC/tlog.toml" | tail -n 1)
    for _ in $(seq 1 60); do
      r=$(curl -sS "http://${listen:-127.0.0.1:8090}/readyz" 2>/dev/null || true)
      grep -q '^tree .*: \(active\|refused\|frozen\)' <<<"$r" && ! grep -q ': standby' <<<"$r" && break
      sleep 0.5
    done
    sed 's/^/  tlog: /' <<<"$r"
    if grep -q ': refused' <<<"$r"; then
      held=1
      say "some trees are held back by the rollback guard: the archive holds them behind heads that were signed."
      say "Do not remove the guard's records to force them: README \"Backups and recovery\" says what to do"
      say "(freeze them with frozen = true and start new trees)."
    fi
  fi
  [ $held = 0 ] || exit 3
  say "restored; every tree is in service"
}

case "${0##*/}:${1:-}" in
  sigvault-backup:*) backup "$@" ;;
  sigvault-restore:*) restore "$@" ;;
  *:backup) shift; backup "$@" ;;
  *:restore) shift; restore "$@" ;;
  *) die "usage: sigvault-backup ARCHIVE | sigvault-restore ARCHIVE [--checkpoint FILE]... (or backup.sh backup|restore ...)" ;;
esac
