#!/bin/sh
# Who may open which SoftHSM2 token (README.md "Install on a VM", step 2).
#
#   token-custody.sh grant LABEL GROUP   the token LABEL openable by GROUP only (and root)
#   token-custody.sh export LABEL FILE   the token LABEL written to FILE (tar) and removed here
#   token-custody.sh import FILE         a token exported with `export` put back (root only)
#
# SoftHSM2 keeps each token in its own directory under the token dir (one UUID per token) and
# skips, without an error, the directories the calling user cannot read: a service then sees its
# own token and no other. Only its PIN protects a token the service can read, so each token is
# readable by the group of the services that use it and nobody else, and the root CA's token does
# not stay on the appliance at all (export it to offline custody; import it back for
# `sigvault ceremony --add ...`, then export it again).
set -eu

TOKENDIR=${SOFTHSM2_TOKENDIR:-$(sed -n 's/^[[:space:]]*directories.tokendir[[:space:]]*=[[:space:]]*//p' \
  "${SOFTHSM2_CONF:-/etc/softhsm/softhsm2.conf}" 2>/dev/null | tail -n 1)}
TOKENDIR=${TOKENDIR:-/var/lib/softhsm/tokens}

die() { echo "token-custody.sh: $*" >&2; exit 1; }

# The directory of the token labelled $1: token.object holds the label space-padded to 32 bytes.
token_dir() {
  label=$1 found=
  padded=$(printf '%-32s' "$label")
  [ ${#label} -le 32 ] || die "a token label has at most 32 characters: $label"
  for d in "$TOKENDIR"/*/; do
    [ -f "$d/token.object" ] || continue
    if grep -qaF -- "$padded" "$d/token.object"; then
      [ -z "$found" ] || die "more than one token labelled '$label' in $TOKENDIR"
      found=${d%/}
    fi
  done
  [ -n "$found" ] || die "no token labelled '$label' in $TOKENDIR"
  echo "$found"
}

case "${1:-}" in
  grant)
    [ $# = 3 ] || die "usage: token-custody.sh grant LABEL GROUP"
    getent group "$3" >/dev/null || die "no group $3"
    d=$(token_dir "$2")
    chown -R root:"$3" "$d"
    # The group reads the objects and writes the lock files SoftHSM2 keeps beside them; new
    # files inherit the group (setgid directory).
    chmod 2770 "$d"
    find "$d" -type f -exec chmod 0660 {} +
    echo "token '$2' ($d): group $3 only"
    ;;
  export)
    [ $# = 3 ] || die "usage: token-custody.sh export LABEL FILE"
    d=$(token_dir "$2")
    (umask 077; tar -C "$TOKENDIR" -cf "$3" "${d##*/}")
    tar -tf "$3" >/dev/null
    rm -rf "$d"
    echo "token '$2' written to $3 and removed from $TOKENDIR"
    ;;
  import)
    [ $# = 2 ] || die "usage: token-custody.sh import FILE"
    tar -C "$TOKENDIR" -xpf "$2"
    echo "imported $2 into $TOKENDIR (root only until granted)"
    ;;
  *) die "usage: token-custody.sh grant LABEL GROUP | export LABEL FILE | import FILE" ;;
esac
