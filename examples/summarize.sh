#!/bin/sh
# summarize.sh — a short summary of each file.
#   summarize.sh [-p PROMPT] FILE...
# Each file is one message (its name, then its text) in a scratch context that
# is removed afterwards; the history is cleared between files, so each summary
# sees one file only (and no tokens are spent resending the others).  Prints
# "== FILE ==" and the summary of each.  Exits 1 if a file could not be read or
# summarized (the reason on standard error), after trying the others.
# Uses the mount at $MCPFS_MOUNT (default ~/mcp).
set -eu
mnt=${MCPFS_MOUNT:-$HOME/mcp}
# Refuse anything but an mcpfs mount: in a plain directory the files below
# would be written and nothing would ever answer.
if [ "$(findmnt -n -o FSTYPE -M "$mnt" 2>/dev/null)" != fuse.mcpfs ]; then
	echo "${0##*/}: '$mnt' is not an mcpfs mount (mount one there, or set MCPFS_MOUNT)" >&2
	exit 1
fi
prompt="Summarize the file the user sends in at most three sentences."
if [ "${1:-}" = "-p" ]; then
	prompt=$2
	shift 2
fi
if [ $# -eq 0 ]; then
	echo "usage: summarize.sh [-p PROMPT] FILE..." >&2
	exit 2
fi
ctx="summarize-$$"
dir="$mnt/$ctx"
mkdir "$dir"
trap 'rmdir "$dir"' EXIT
printf '%s\n' "$prompt" >"$dir/system"
status=0
for f in "$@"; do
	printf '== %s ==\n' "$f"
	if [ ! -f "$f" ] || [ ! -r "$f" ]; then
		echo "summarize.sh: cannot read '$f'" >&2
		status=1
		continue
	fi
	# The write fails at close for text that is not UTF-8 (EILSEQ) or too
	# large (EFBIG): nothing is sent then.
	if ! { printf 'File: %s\n\n' "$(basename "$f")" && cat "$f"; } >"$dir/input"; then
		echo "summarize.sh: '$f' was refused (not UTF-8 text, or too large)" >&2
		status=1
		continue
	fi
	if cat "$dir/output"; then
		echo
	else
		sed -n 's/^last_error: /summarize.sh: /p' "$dir/status" >&2
		status=1
	fi
	echo clear >"$dir/ctl"
done
exit $status
