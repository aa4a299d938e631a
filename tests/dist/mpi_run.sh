#!/bin/sh
# mpi_run.sh NP COMMAND [ARGS...]: COMMAND on NP ranks under Open MPI's mpirun, oversubscribed (CI
# machines have 2 cores) and allowed to run as root (training.md §12). Exit 77, which CTest reports as
# skipped, when there is no mpirun.
command -v mpirun > /dev/null 2>&1 || { echo "mpirun not found: skipped"; exit 77; }
np=$1
shift
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
exec mpirun --oversubscribe --allow-run-as-root -np "$np" "$@"
