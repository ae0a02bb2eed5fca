# Sourced by the bench scripts: bounded waits, so a bench whose server or
# agent died ends with a message instead of waiting forever.

# wait_for SECONDS WHAT COMMAND...: runs COMMAND every WAIT_POLL seconds
# (0.1) until it succeeds; after SECONDS it says what it waited for and
# exits 1.
wait_for() {
  local secs=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + secs))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "timed out after ${secs}s waiting for $what" >&2
      exit 1
    fi
    sleep "${WAIT_POLL:-0.1}"
  done
}

# ctr_clean NAMESPACE: kills, then removes, every container of NAMESPACE.
ctr_clean() {
  local ns=$1 c
  for c in $(ctr -n "$ns" c ls -q 2>/dev/null); do
    ctr -n "$ns" t kill -s KILL "$c" >/dev/null 2>&1 || true
  done
  sleep 0.5
  for c in $(ctr -n "$ns" c ls -q 2>/dev/null); do
    ctr -n "$ns" t rm "$c" >/dev/null 2>&1 || true
    ctr -n "$ns" c rm "$c" >/dev/null 2>&1 || true
  done
}

ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# cpu_s PID: the CPU seconds (user+system) the process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }

# pin_cpus: sets CPU0 and CPU1, command prefixes that pin to CPU 0 and 1
# (empty without taskset or a second CPU). Arrays, not a function to run
# through: a backgrounded function is a subshell whose $! is not the
# program's pid.
pin_cpus() {
  CPU0=() CPU1=()
  if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    CPU0=(taskset -c 0) CPU1=(taskset -c 1)
  fi
}
