# sigvault %postun: reload systemd. Users and groups are kept on erase (RPM has no purge, and
# Fedora/RHEL policy is never to remove system users: files they own may remain). Keys, the
# ceremony record in /var/lib/sigvault and /etc/sigvault/credentials are never removed.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
