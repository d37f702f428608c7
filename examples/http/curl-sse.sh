#!/bin/sh
# curl-sse.sh — ask Claude through mcpfs's HTTP shim and print the reply as it
# streams, with nothing but curl and jq.
#   curl-sse.sh CONTEXT MESSAGE...
# The shim is at $MCPFS_HTTP (default http://127.0.0.1:61900); when
# $MCPFS_HTTP_TOKEN_FILE is set, its content is sent as the bearer token.
# CONTEXT is created when it does not exist.  Exits 1, with the error on
# standard error, when the request or the turn fails, and before sending
# anything when $MCPFS_HTTP is not an mcpfs shim.
set -eu
base=${MCPFS_HTTP:-http://127.0.0.1:61900}
if [ $# -lt 2 ]; then
	echo "usage: $0 CONTEXT MESSAGE..." >&2
	exit 2
fi
ctx=$1
shift
# The token goes to curl in a file (-H @file), not on its command line, where
# ps would show it to every user of the machine.
hdr=""
if [ -n "${MCPFS_HTTP_TOKEN_FILE:-}" ]; then
	hdr=$(mktemp)
	trap 'rm -f "$hdr"' EXIT
	printf 'Authorization: Bearer %s\n' "$(cat "$MCPFS_HTTP_TOKEN_FILE")" >"$hdr"
fi
req() {
	if [ -n "$hdr" ]; then
		curl -H "@$hdr" "$@"
	else
		curl "$@"
	fi
}

# Refuse anything but an mcpfs shim: the requests below would create a
# context on whatever else answers at that address.
health=$(req -sS --max-time 10 -w '\n%{http_code}' "$base/v1/health" 2>/dev/null) || health=""
case $(printf '%s\n' "$health" | tail -n 1) in
200)
	if [ "$(printf '%s\n' "$health" | sed '$d' | jq -r \
		'if .status == "ok" and (.version | type) == "string" then "ok" else "" end' \
		2>/dev/null)" != ok ]; then
		echo "curl-sse.sh: $base is not an mcpfs HTTP shim (set MCPFS_HTTP)" >&2
		exit 1
	fi
	;;
401)
	echo "curl-sse.sh: the shim at $base wants a token (set MCPFS_HTTP_TOKEN_FILE)" >&2
	exit 1
	;;
000 | "")
	echo "curl-sse.sh: nothing answers at $base (start mcpfs --http, or set MCPFS_HTTP)" >&2
	exit 1
	;;
*)
	echo "curl-sse.sh: $base is not an mcpfs HTTP shim (set MCPFS_HTTP)" >&2
	exit 1
	;;
esac

# Names go into the path percent-encoded.
enc=$(jq -rn --arg n "$ctx" '$n | @uri')

code=$(jq -n --arg n "$ctx" '{name: $n}' |
	req -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
		--data-binary @- "$base/v1/contexts")
case $code in
201 | 409) ;;  # created, or there already
*)
	echo "curl-sse.sh: cannot create context '$ctx' (HTTP $code)" >&2
	exit 1
	;;
esac

# Server-Sent Events: "event: NAME" and "data: JSON" lines, a blank line after
# each event; ": keep-alive" comments arrive while the reply is slow.
jq -n --arg c "$*" '{content: $c}' |
	req -sS -N -H 'Accept: text/event-stream' -H 'Content-Type: application/json' \
		--data-binary @- "$base/v1/contexts/$enc/messages" |
	{
		event=""
		while IFS= read -r line; do
			case $line in
			"event: "*) event=${line#event: } ;;
			"data: "*)
				data=${line#data: }
				case $event in
				delta) printf '%s' "$data" | jq -j '.text' ;;
				done)
					echo
					exit 0
					;;
				error)
					echo
					printf '%s' "$data" | jq -r '"curl-sse.sh: \(.type): \(.message)"' >&2
					exit 1
					;;
				*)  # not a stream: an HTTP error body
					printf '%s' "$data" >&2
					exit 1
					;;
				esac
				;;
			"{"*)
				printf '%s\n' "$line" | jq -r '"curl-sse.sh: \(.error.message)"' >&2
				exit 1
				;;
			esac
		done
		echo "curl-sse.sh: the stream ended early" >&2
		exit 1
	}
