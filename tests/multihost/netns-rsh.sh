#!/bin/bash
# mpirun's launch agent for the namespace hosts (--mca plm_rsh_agent this-file): called as
# `netns-rsh.sh [ssh options] HOST COMMAND...`, it runs COMMAND inside HOST's namespace
# with its own host name, so Open MPI and baton see separate hosts.
while [[ "$1" == -* ]]; do shift; done
host=$1
shift
ns="bt-h${host##*.1}"
exec ip netns exec "$ns" unshare --uts /bin/sh -c "hostname $ns; $*"
