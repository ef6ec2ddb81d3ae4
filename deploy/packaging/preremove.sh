#!/bin/sh
# Stop Klaxon before its binary goes away (not on upgrade: the running one
# keeps paging until the new one is started).
case "$1" in
remove | 0)
	if [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now klaxon.service || true
	fi
	;;
esac
exit 0
