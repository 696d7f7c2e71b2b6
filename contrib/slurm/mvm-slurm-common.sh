# SPDX-License-Identifier: MIT
# Sourced by the mvm Slurm scripts: where mvmctl and mvmd's socket are.
# /etc/mvm/slurm.env (or $MVM_SLURM_ENV) may set MVMCTL, MVM_SOCKET,
# SCONTROL and SINFO; in MVM_SOCKET, %n stands for the Slurm node name (one
# mvmd per node name on a host, as tests/cluster runs them).
conf=${MVM_SLURM_ENV:-/etc/mvm/slurm.env}
if [ -r "$conf" ]; then
	# shellcheck source=/dev/null
	. "$conf"
fi
node=${SLURMD_NODENAME:-$(hostname -s)}
MVMCTL=${MVMCTL:-mvmctl}
SCONTROL=${SCONTROL:-scontrol}
SINFO=${SINFO:-sinfo}
MVM_SOCKET=$(printf '%s' "${MVM_SOCKET:-/run/mvm/mvmd.sock}" | sed "s/%n/$node/g")
export MVM_SOCKET
