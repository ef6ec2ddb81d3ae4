#!/bin/sh
# Let systemd see the (new) unit; never start or restart Klaxon behind the
# operator's back. Nothing to do when installing into another root (DPKG_ROOT).
if [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
fi
exit 0
