# SPDX-License-Identifier: MIT
# bash completion for mvmctl: commands, options, and VM names from
# `mvmctl list -q` (asked of the same socket the command line names).

_mvmctl_commands="create run start stop restart pause resume kill rm list show console logs events
update stats host metrics version help boot shutdown destroy remove delete ls"

_mvmctl()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
	local cmd="" opts="" i
	local -a sock=()

	# the command is the first word that is neither a global option nor its value
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		--socket) sock=(--socket "${COMP_WORDS[i + 1]}"); ((i++)) ;;
		-o | --output) ((i++)) ;;
		-*) ;;
		*) cmd=${COMP_WORDS[i]}; break ;;
		esac
	done

	case $prev in
	--disk)
		# update: I:LIMIT..., nothing to complete
		[[ $cmd == update ]] && return
		COMPREPLY=($(compgen -f -- "$cur")); return ;;
	--socket | --kernel | --initrd)
		COMPREPLY=($(compgen -f -- "$cur")); return ;;
	-o | --output)
		COMPREPLY=($(compgen -W "json table" -- "$cur")); return ;;
	--signal)
		COMPREPLY=($(compgen -W "SIGTERM SIGKILL SIGINT SIGHUP SIGQUIT SIGUSR2 SIGALRM" -- "$cur")); return ;;
	--state)
		COMPREPLY=($(compgen -W "created queued starting running stopping stopped crashed" -- "$cur")); return ;;
	--restart)
		COMPREPLY=($(compgen -W "no on-failure always" -- "$cur")); return ;;
	--vm)
		COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" "${sock[@]}" list -q 2>/dev/null)" -- "$cur")); return ;;
	--label | --timeout | --stop-timeout | --mem | --vcpus | --cmdline | --net | --pool | --tail | --idle | --balloon | --vsock)
		return ;;
	esac

	if [[ -z $cmd ]]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--socket -o --help --version" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$_mvmctl_commands" -- "$cur"))
		fi
		return
	fi

	case $cmd in
	create) opts="-f --file --kernel --initrd --cmdline --vcpus --mem --disk --net --balloon --rng --vsock --label
		--restart --pool --no-start --no-queue --autostart --wait" ;;
	run) opts="--kernel --initrd --cmdline --vcpus --mem --disk --net --balloon --rng --vsock --label --restart
		--pool --no-queue --rm --stop-timeout" ;;
	update) opts="--disk --net --balloon" ;;
	stop | shutdown | restart) opts="--label --timeout" ;;
	kill | destroy) opts="--label --signal" ;;
	rm | remove | delete) opts="-f --force --label" ;;
	start | boot | pause | resume) opts="--label" ;;
	list | ls) opts="--state --label -q --quiet" ;;
	console) opts="--idle" ;;
	logs) opts="-f --follow --tail" ;;
	events) opts="--vm --since" ;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$opts -o --help" -- "$cur"))
		return
	fi
	case $cmd in
	help)
		COMPREPLY=($(compgen -W "$_mvmctl_commands" -- "$cur")) ;;
	host)
		COMPREPLY=($(compgen -W "set" -- "$cur")) ;;
	start | stop | restart | pause | resume | kill | rm | show | console | logs | update | stats | \
	boot | shutdown | destroy | remove | delete)
		COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" "${sock[@]}" list -q 2>/dev/null)" -- "$cur")) ;;
	esac
}

complete -F _mvmctl mvmctl
