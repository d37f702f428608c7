# bash completion for mcpfs(1)                            -*- shell-script -*-
# The word lists below are filled at build time from `mcpfs --options-table=bash`,
# the table that --help prints.
@WORDS@

_mcpfs()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=
	((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
	local IFS=$'\n'

	# -o a,b,c: complete the last of the comma-separated options.
	if [[ $prev == -o ]]; then
		local head= last=$cur name
		if [[ $cur == *,* ]]; then
			head=${cur%,*},
			last=${cur##*,}
		fi
		if [[ $last == *=* ]]; then
			name=${last%%=*}
			if [[ " $_mcpfs_dir_args " == *" $name "* ]]; then
				COMPREPLY=($(compgen -d -P "$head$name=" -- "${last#*=}"))
			elif [[ " $_mcpfs_file_args " == *" $name "* ]]; then
				COMPREPLY=($(compgen -f -P "$head$name=" -- "${last#*=}"))
			fi
		else
			COMPREPLY=($(IFS=' ' compgen -P "$head" \
				-W "$_mcpfs_o_names allow_other default_permissions" -- "$last"))
		fi
		compopt -o nospace 2>/dev/null
		return 0
	fi
	# --state-dir=DIR, --api-key-file=F
	if [[ $cur == --*=* ]]; then
		local name=${cur%%=*}
		if [[ " $_mcpfs_dir_args " == *" $name "* ]]; then
			COMPREPLY=($(compgen -d -P "$name=" -- "${cur#*=}"))
		elif [[ " $_mcpfs_file_args " == *" $name "* ]]; then
			COMPREPLY=($(compgen -f -P "$name=" -- "${cur#*=}"))
		fi
		return 0
	fi
	if [[ $cur == -* ]]; then
		COMPREPLY=($(IFS=' ' compgen -W "$_mcpfs_flags -o" -- "$cur"))
		[[ ${COMPREPLY[0]-} == *= ]] && compopt -o nospace 2>/dev/null
		return 0
	fi
	# SOURCE or MOUNTPOINT: a directory.
	COMPREPLY=($(compgen -d -- "$cur"))
	return 0
}
complete -F _mcpfs mcpfs
