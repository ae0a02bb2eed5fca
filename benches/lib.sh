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
