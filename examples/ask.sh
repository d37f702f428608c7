#!/bin/sh
# ask.sh — one question, one answer, from the shell (installed as mcpfs-ask).
#   ask.sh [-c CONTEXT] QUESTION...      (or the question on standard input)
# Uses the mount at $MCPFS_MOUNT (default ~/mcp).  Without -c, a context named
# ask-<pid> is created and removed afterwards (also when the question is
# refused or on Ctrl-C, which cancels the call); with -c the conversation goes
# on in that context (created if needed).  Refuses to run (exit 1) when
# $MCPFS_MOUNT is not an mcpfs mount.
set -eu
prog=${0##*/}
usage() {
	echo "usage: $prog [-c CONTEXT] [QUESTION...]  (no QUESTION: read it from standard input)"
}
case "${1:-}" in
-h | --help)
	usage
	exit 0
	;;
-c)
	if [ $# -lt 2 ] || [ -z "$2" ]; then
		usage >&2
		exit 2
	fi
	;;
esac
mnt=${MCPFS_MOUNT:-$HOME/mcp}
# Refuse anything but an mcpfs mount: in a plain directory the files below
# would be written and nothing would ever answer.
if [ "$(findmnt -n -o FSTYPE -M "$mnt" 2>/dev/null)" != fuse.mcpfs ]; then
	echo "$prog: '$mnt' is not an mcpfs mount (mount one there, or set MCPFS_MOUNT)" >&2
	exit 1
fi
ctx=""
if [ "${1:-}" = "-c" ]; then
	ctx=$2
	shift 2
fi
if [ $# -gt 0 ] && [ -z "$(printf '%s' "$*" | tr -d ' \t\n')" ]; then
	echo "$prog: empty question: nothing sent" >&2
	exit 1
fi
keep=1
if [ -z "$ctx" ]; then
	ctx="ask-$$"
	keep=0
fi
dir="$mnt/$ctx"
# The scratch context goes on every way out: the EXIT trap runs on exit, and
# Ctrl-C (SIGINT) first cancels the call in flight so that it stops spending.
# shellcheck disable=SC2317  # the traps call these
cleanup() {
	[ "$keep" = 1 ] || rmdir "$dir" 2>/dev/null || true
}
# shellcheck disable=SC2317
interrupted() {
	trap - INT
	echo cancel 2>/dev/null >"$dir/ctl" || true
	echo >&2
	echo "$prog: interrupted: the call was cancelled" >&2
	exit 130
}
trap cleanup EXIT
trap interrupted INT TERM HUP
[ -d "$dir" ] || mkdir "$dir"
# A refused question (not UTF-8, too large...) fails the write or the close;
# status says why.  cat reports a failed close, which the shell would not.
refused() {
	why=$(sed -n 's/^last_refused: //p' "$dir/status" 2>/dev/null | sed 's/ (at [^)]*)$//')
	echo "$prog: not sent: ${why:-the write to $dir/input failed}" >&2
	exit 1
}
if [ $# -gt 0 ]; then
	printf '%s\n' "$*" | cat 2>/dev/null >"$dir/input" || refused
else
	cat 2>/dev/null >"$dir/input" || refused
fi
# When the writer's close returned, output is already this question's reply.
status=0
cat "$dir/output" || status=$?
echo
if [ $status -ne 0 ]; then
	sed -n "s/^last_error: /$prog: /p" "$dir/status" >&2
fi
exit $status
