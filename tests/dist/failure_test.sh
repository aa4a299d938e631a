#!/bin/sh
# failure_test.sh TEST_ZERO_MPI: a rank that fails mid-step must take the job down within a timeout,
# with a message naming it, never hang.
#   fail   rank 1 of 3 throws       -> "vt: rank 1 of 3 failed: injected failure ..." (abort_job, MPI_Abort)
#   exit   rank 2 of 3 _Exits(7)    -> mpirun ends the others and names the process and its exit code 7
#   stuck  rank 1 of 2 sleeps 60 s  -> rank 0's collective times out after VT_DIST_TIMEOUT_S=3 s, naming itself
#                                      and the collective, and aborts the job
command -v mpirun > /dev/null 2>&1 || { echo "mpirun not found: skipped"; exit 77; }
bin=$1
run=$(dirname "$0")/mpi_run.sh
status=0
check() {  # mode np max_seconds pattern
  start=$(date +%s)
  out=$(VT_DIST_TIMEOUT_S=3 timeout 90 sh "$run" "$2" "$bin" "$1" 2>&1)
  rc=$?
  took=$(( $(date +%s) - start ))
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || [ "$took" -gt "$3" ] || ! printf '%s' "$out" | grep -Eq "$4"; then
    echo "FAILED: mode $1 on $2 ranks: exit $rc after ${took}s (limit $3 s), expected /$4/ in:"
    printf '%s\n' "$out" | tail -30
    status=1
  else
    echo "ok: mode $1 on $2 ranks ended in ${took}s with exit $rc: $(printf '%s' "$out" | grep -Eo "$4" | head -1)"
  fi
}
check fail 3 30 "rank 1 of 3 failed: injected failure"
check exit 3 30 "Process name: *\[\[[0-9]+,1\],2\]"
check stuck 2 40 "rank 0 of 2: (reduce_scatter|all_reduce|all_gather).*did not complete within 3 s"
exit $status
