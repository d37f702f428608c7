#!/bin/bash
# chat.sh — a read-eval-print loop over the mount.
#   chat.sh [CONTEXT]      (default: chat)
# Each line you type is one message; the reply streams as it arrives.  Commands:
# /retry, /cancel, /clear (written to ctl), /history, /quit (or end of input).
set -u
mnt=${MCPFS_MOUNT:-$HOME/mcp}
ctx=${1:-chat}
dir="$mnt/$ctx"
[ -d "$dir" ] || mkdir "$dir" || exit 1
while true; do
	if [ -t 0 ]; then
		read -r -e -p "you> " line || break
	else
		read -r line || break
	fi
	case "$line" in
	"") continue ;;
	/quit) break ;;
	/history) cat "$dir/history"; continue ;;
	/retry|/cancel|/clear) echo "${line#/}" > "$dir/ctl" || continue
		[ "$line" = /retry ] || continue ;;
	*) printf '%s\n' "$line" > "$dir/input" ;;
	esac
	[ -t 1 ] && printf 'claude> '
	cat "$dir/output" || sed -n 's/^last_error: /error: /p' "$dir/status" >&2
	echo
done
