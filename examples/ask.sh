#!/bin/sh
# ask.sh — one question, one answer, from the shell (installed as mcpfs-ask).
#   ask.sh [-c CONTEXT] QUESTION...      (or the question on standard input)
# Uses the mount at $MCPFS_MOUNT (default ~/mcp).  Without -c, a context named
# ask-<pid> is created and removed afterwards; with -c the conversation goes on
# in that context (created if needed).  Refuses to run (exit 1) when
# $MCPFS_MOUNT is not an mcpfs mount.
set -eu
mnt=${MCPFS_MOUNT:-$HOME/mcp}
# Refuse anything but an mcpfs mount: in a plain directory the files below
# would be written and nothing would ever answer.
if [ "$(findmnt -n -o FSTYPE -M "$mnt" 2>/dev/null)" != fuse.mcpfs ]; then
	echo "${0##*/}: '$mnt' is not an mcpfs mount (mount one there, or set MCPFS_MOUNT)" >&2
	exit 1
fi
ctx=""
if [ "${1:-}" = "-c" ]; then
	ctx=$2
	shift 2
fi
keep=1
if [ -z "$ctx" ]; then
	ctx="ask-$$"
	keep=0
fi
[ -d "$mnt/$ctx" ] || mkdir "$mnt/$ctx"
if [ $# -gt 0 ]; then
	printf '%s\n' "$*" > "$mnt/$ctx/input"
else
	cat > "$mnt/$ctx/input"
fi
# When the writer's close returned, output is already this question's reply.
status=0
cat "$mnt/$ctx/output" || status=$?
echo
if [ $status -ne 0 ]; then
	sed -n "s/^last_error: /${0##*/}: /p" "$mnt/$ctx/status" >&2
fi
[ $keep = 1 ] || rmdir "$mnt/$ctx"
exit $status
