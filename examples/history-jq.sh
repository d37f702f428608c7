#!/bin/sh
# history-jq.sh — what a context sends next, read with jq from history.json.
#   history-jq.sh CONTEXT          one line per message: number, role, bytes, first line
#   history-jq.sh CONTEXT last     the text of the last reply in the history
#   history-jq.sh CONTEXT export   the messages as JSON lines {"role":…,"content":…}
#   history-jq.sh CONTEXT stats    model, messages, bytes by role, pruned messages
# Uses the mount at $MCPFS_MOUNT (default ~/mcp).
set -eu
mnt=${MCPFS_MOUNT:-$HOME/mcp}
# Refuse anything but an mcpfs mount: in a plain directory the files below
# would be written and nothing would ever answer.
if [ "$(findmnt -n -o FSTYPE -M "$mnt" 2>/dev/null)" != fuse.mcpfs ]; then
	echo "${0##*/}: '$mnt' is not an mcpfs mount (mount one there, or set MCPFS_MOUNT)" >&2
	exit 1
fi
if [ $# -lt 1 ]; then
	echo "usage: history-jq.sh CONTEXT [list|last|export|stats]" >&2
	exit 2
fi
file="$mnt/$1/history.json"
[ -r "$file" ] || { echo "history-jq.sh: no context '$1' in $mnt" >&2; exit 1; }
case "${2:-list}" in
list)
	jq -r '.messages | to_entries[] |
		"\(.key + 1)\t\(.value.role)\t\(.value.content | utf8bytelength)\t\(.value.content | split("\n")[0])"' "$file"
	;;
last)
	jq -j '[.messages[] | select(.role == "assistant")] | last // empty | .content' "$file"
	echo
	;;
export)
	jq -c '.messages[] | {role, content}' "$file"
	;;
stats)
	jq -r '"model: \(.model)",
		"messages: \(.messages | length)",
		"pruned_messages: \(.pruned_messages)",
		"user_bytes: \([.messages[] | select(.role == "user") | .content | utf8bytelength] | add // 0)",
		"assistant_bytes: \([.messages[] | select(.role == "assistant") | .content | utf8bytelength] | add // 0)"' "$file"
	;;
*)
	echo "history-jq.sh: unknown view '$2' (list, last, export, stats)" >&2
	exit 2
	;;
esac
