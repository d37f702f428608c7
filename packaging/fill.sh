#!/bin/sh
# fill.sh TEMPLATE OUT VERSION [NAME=FILE | -DNAME=VALUE]... — copies TEMPLATE
# to OUT with @VERSION@ replaced, each line that is exactly @NAME@ replaced by
# FILE, and each @NAME@ of a -D argument replaced by VALUE wherever it is.
# The build uses it to put the output of `mcpfs --options-table=FORMAT` into
# the man page source and the bash completion, and the configured install
# paths (-DBINDIR=/usr/local/bin, -DDOCDIR=...) into the man pages.
set -eu
tmpl=$1 out=$2 version=$3
shift 3
sed "s/@VERSION@/$version/g" "$tmpl" >"$out.tmp"
for kv in "$@"; do
	case $kv in
	-D*=*)
		name=${kv#-D}
		name=${name%%=*}
		# sed replacement text: escape \, | and & (paths have none, but
		# a prefix may).
		value=$(printf '%s' "${kv#*=}" | sed 's/[\\|&]/\\&/g')
		sed "s|@$name@|$value|g" "$out.tmp" >"$out.tmp2"
		mv "$out.tmp2" "$out.tmp"
		continue
		;;
	esac
	name=${kv%%=*} file=${kv#*=}
	grep -qx "@$name@" "$out.tmp" || { echo "fill.sh: no line @$name@ in $tmpl" >&2; exit 1; }
	sed -e "/^@$name@\$/{r $file" -e 'd' -e '}' "$out.tmp" >"$out.tmp2"
	mv "$out.tmp2" "$out.tmp"
done
if grep -n '^@[A-Z_]*@$' "$out.tmp" >&2; then
	echo "fill.sh: unfilled line in $tmpl" >&2
	exit 1
fi
mv "$out.tmp" "$out"
