#!/bin/bash
# chat.sh — a read-eval-print loop over the mount (installed as mcpfs-chat).
#   chat.sh [CONTEXT]      (default: chat; created when it does not exist)
# Each line you type is one message; the reply streams as it arrives.  On a
# terminal the line can be edited and Up/Down recall earlier lines (readline).
#   """            on a line of its own starts a message of several lines;
#                  another """ line sends it
#   Ctrl-C         while a reply streams: cancels that call (written to ctl)
#                  and returns to the prompt; at the prompt: drops the line
#   Ctrl-D, /quit  leave
#   /help          the commands (answered here; nothing is sent)
#   /retry         send the newest message again (regenerates a complete reply)
#   /cancel        cancel a call in flight (another writer's, say)
#   /clear         start an empty history (the transcript keeps it all)
#   /history       what the next call sends
#   //text         sends "/text" (any other /word is refused, never sent)
# While a failed call is retried, "retrying…" and the reason are shown.
# Uses the mount at $MCPFS_MOUNT (default ~/mcp) and refuses anything that is
# not an mcpfs mount.
set -u
prog=${0##*/}
mnt=${MCPFS_MOUNT:-$HOME/mcp}
if [ "$(findmnt -n -o FSTYPE -M "$mnt" 2>/dev/null)" != fuse.mcpfs ]; then
	echo "$prog: '$mnt' is not an mcpfs mount (mount one there, or set MCPFS_MOUNT)" >&2
	exit 1
fi
ctx=${1:-chat}
dir="$mnt/$ctx"
[ -d "$dir" ] || mkdir "$dir" || exit 1
tty_in=0
[ -t 0 ] && tty_in=1

# SIGINT only raises a flag: the loop decides what it means (cancel the call,
# or drop the line being typed).  Background jobs of a script ignore SIGINT,
# so the cat below lives until the loop ends it.
interrupted=0
trap 'interrupted=1' INT

say() { printf '%s\n' "$*" >&2; }

# The context's status, and one key of it ("last_error").
status_word() { head -n 1 "$dir/status" 2>/dev/null; }
status_key() { sed -n "s/^$1: //p" "$dir/status" 2>/dev/null | head -n 1; }

# Shows "retrying…" each time the call in flight is tried again, until its
# reply starts (retries stop there).  Runs beside the cat of output.
watch_retries() {
	local shown="" line
	while sleep 0.2; do
		line=$(grep -m 1 'retrying' "$dir/status" 2>/dev/null) || line=""
		if [ -n "$line" ] && [ "$line" != "$shown" ]; then
			say "retrying… (${line#*retrying: })"
			shown=$line
		fi
		case $(status_word) in
		streaming | waiting | queued) ;;
		*) return ;;
		esac
	done
}

# Prints the reply to the newest message as it streams; Ctrl-C cancels it.
stream() {
	[ -t 1 ] && printf 'claude> '
	interrupted=0
	cat "$dir/output" &
	local cat_pid=$! rc
	watch_retries &
	local watch_pid=$!
	wait "$cat_pid"
	rc=$?
	if [ $interrupted = 1 ]; then
		# The flag is set before wait returns: cancel, then let cat see
		# the end of the turn (partial text, then EIO) or stop it.
		echo cancel 2>/dev/null >"$dir/ctl"
		kill "$cat_pid" 2>/dev/null
		wait "$cat_pid" 2>/dev/null
		echo
		say "[cancelled: the call was stopped; your next message is sent normally]"
	elif [ $rc -ne 0 ]; then
		echo
		say "error: $(status_key last_error)"
	else
		echo
	fi
	kill "$watch_pid" 2>/dev/null
	wait "$watch_pid" 2>/dev/null
	interrupted=0
}

help() {
	cat <<'EOF'
Type a message and press Enter; the reply streams below it.
  """         on a line of its own: start (and end) a message of several lines
  Ctrl-C      cancel the reply that is streaming (at the prompt: drop the line)
  /retry      send the newest message again
  /cancel     cancel a call in flight
  /clear      start an empty history
  /history    show what the next call sends
  /help       this text (nothing is sent)
  /quit       leave (or Ctrl-D)
  //text      send "/text"
EOF
}

# Reads one line into $line (prompt $1); 1 at end of input, 2 after Ctrl-C.
read_line() {
	line=""
	interrupted=0
	if [ $tty_in = 1 ]; then
		# In a subshell, which Ctrl-C ends (readline alone would go on
		# reading); it inherits the history that Up recalls.
		line=$(IFS= read -r -e -p "$1" l && printf '%s' "$l")
	else
		IFS= read -r line
	fi
	local rc=$?
	if [ $interrupted = 1 ] || [ $rc -gt 128 ]; then
		echo
		interrupted=0
		return 2
	fi
	[ $rc = 0 ] || [ -n "$line" ] || return 1
	[ $tty_in = 1 ] && [ -n "$line" ] && history -s -- "$line"
	return 0
}

# A message of several lines, up to a line """; into $msg.  1 when dropped.
read_multi() {
	msg=""
	while true; do
		read_line '...> '
		case $? in
		1) return 1 ;;
		2) say "[dropped]"; return 1 ;;
		esac
		[ "$line" = '"""' ] && return 0
		msg+="$line"$'\n'
	done
}

send() {
	if printf '%s\n' "$1" >"$dir/input"; then
		stream
	else
		local why
		why=$(status_key last_refused)
		say "[not sent${why:+: $why}]"
	fi
}

while true; do
	read_line 'you> '
	case $? in
	1) break ;;
	2) continue ;;
	esac
	case "$line" in
	"") continue ;;
	/quit) break ;;
	/help) help ;;
	/history) cat "$dir/history" ;;
	/clear)
		if echo clear 2>/dev/null >"$dir/ctl"; then
			say "[history cleared]"
		else
			say "[clear failed]"
		fi
		;;
	/cancel)
		case $(status_word) in
		streaming | waiting | queued)
			echo cancel 2>/dev/null >"$dir/ctl"
			say "[cancelled the call in flight]"
			;;
		*) say "[nothing to cancel: no call in flight]" ;;
		esac
		;;
	/retry)
		if echo retry 2>/dev/null >"$dir/ctl"; then
			say "[sending the newest message again]"
			stream
		else
			say "[nothing to retry: no message has been sent yet, or a call is in flight]"
		fi
		;;
	'"""')
		read_multi && [ -n "${msg//[[:space:]]/}" ] && send "${msg%$'\n'}"
		;;
	//*) send "${line#/}" ;;
	/*) say "unknown command ${line%% *} (/help lists them; //text sends /text)" ;;
	*) send "$line" ;;
	esac
done
