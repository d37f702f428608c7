#!/bin/sh
# edit-system.sh — edit a context's system prompt (or its config) in $EDITOR,
# right on the mount, then show what changed.
#   edit-system.sh CONTEXT            the system prompt
#   edit-system.sh -c CONTEXT         the config file (key = value lines)
# The editor saves straight into the file of the mount: the new text replaces
# the old when the editor closes it, and an invalid config fails the save with
# "Invalid argument" and changes nothing.  The context is created if needed.
# $VISUAL or $EDITOR (default vi) is run by the shell, as git does, so it may
# carry arguments: EDITOR='vim -es -c "%s/formal/terse/" -c wq' works unattended.
# Uses the mount at $MCPFS_MOUNT (default ~/mcp).
set -eu
mnt=${MCPFS_MOUNT:-$HOME/mcp}
# Refuse anything but an mcpfs mount: in a plain directory the files below
# would be written and nothing would ever answer.
if [ "$(findmnt -n -o FSTYPE -M "$mnt" 2>/dev/null)" != fuse.mcpfs ]; then
	echo "${0##*/}: '$mnt' is not an mcpfs mount (mount one there, or set MCPFS_MOUNT)" >&2
	exit 1
fi
file=system
if [ "${1:-}" = "-c" ]; then
	file=config
	shift
fi
if [ $# -ne 1 ]; then
	echo "usage: edit-system.sh [-c] CONTEXT" >&2
	exit 2
fi
dir="$mnt/$1"
[ -d "$dir" ] || mkdir "$dir"
before=$(cat "$dir/$file")
editor=${VISUAL:-${EDITOR:-vi}}
if ! sh -c "$editor \"\$@\"" editor "$dir/$file"; then
	echo "edit-system.sh: the editor failed; $1/$file is unchanged" >&2
	exit 1
fi
after=$(cat "$dir/$file")
if [ "$before" = "$after" ]; then
	echo "$1/$file: unchanged"
else
	echo "$1/$file: changed"
	printf '%s\n' "$after"
fi
