# sigvault %post: one system user and group per installed unit sigvault-<svc>.service (so a new
# service needs no change here), state and credential directories, systemd reload. Never enables
# or starts a service: the key ceremony and the configuration come first. On upgrade ($1 >= 2)
# services that are already running are restarted with the new binary.
#
# ctlog and rekor reach the tlog's internal socket through sigvault-tlog-clients; every
# service reaches SoftHSM2 tokens through the softhsm group the units name. Fedora's softhsm
# package uses the group "ods" for /var/lib/softhsm/tokens instead: there, add a drop-in with
# SupplementaryGroups=ods, or give the token files to the softhsm group.
getent group softhsm >/dev/null || groupadd -r softhsm
getent group sigvault-tlog-clients >/dev/null || groupadd -r sigvault-tlog-clients
for unit in /usr/lib/systemd/system/sigvault-*.service; do
    [ -e "$unit" ] || continue
    # A template (sigvault-ctlog@.service) runs as its service's user (sigvault-ctlog).
    case $unit in *@.service) continue ;; esac
    svc=${unit##*/sigvault-}
    svc=${svc%.service}
    user="sigvault-$svc"
    getent group "$user" >/dev/null || groupadd -r "$user"
    getent passwd "$user" >/dev/null || \
        useradd -r -g "$user" -d / -M -s /sbin/nologin -c "sigvault $svc service" "$user"
done
[ -d /var/lib/sigvault ] || install -d -m 0755 -o root -g root /var/lib/sigvault
install -d -m 0755 -o root -g root /etc/sigvault
install -d -m 0700 -o root -g root /etc/sigvault/credentials
chmod 0700 /etc/sigvault/credentials
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 2 ] 2>/dev/null; then
        for unit in /usr/lib/systemd/system/sigvault-*.service; do
            systemctl try-restart "${unit##*/}" >/dev/null 2>&1 || :
        done
        systemctl try-restart 'sigvault-*@*.service' >/dev/null 2>&1 || :
    fi
fi
exit 0
