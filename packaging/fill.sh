#!/bin/sh
# fill.sh TEMPLATE OUT VERSION [NAME=FILE]... — copies TEMPLATE to OUT with
# @VERSION@ replaced and each line that is exactly @NAME@ replaced by FILE.
# The build uses it to put the output of `mcpfs --options-table=FORMAT` into
# the man page source and the bash completion.
set -eu
tmpl=$1 out=$2 version=$3
shift 3
sed "s/@VERSION@/$version/g" "$tmpl" >"$out.tmp"
for kv in "$@"; do
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
