#!/bin/sh
# Stop Klaxon before its binary goes away (not on upgrade: the running one keeps paging).
case "$1" in
remove|0)
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now klaxon.service || true
	fi
	;;
esac
exit 0
