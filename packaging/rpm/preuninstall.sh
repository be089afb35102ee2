# sigvault %preun: on erase ($1 = 0) stop the services before their binary goes away.
if [ "$1" -eq 0 ] 2>/dev/null && [ -d /run/systemd/system ]; then
    systemctl stop sigvault.target >/dev/null 2>&1 || :
    for unit in /usr/lib/systemd/system/sigvault-*.service; do
        [ -e "$unit" ] && systemctl stop "${unit##*/}" >/dev/null 2>&1 || :
    done
    systemctl stop 'sigvault-*@*.service' >/dev/null 2>&1 || :
fi
exit 0
