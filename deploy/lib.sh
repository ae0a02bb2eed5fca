# Sourced by deploy/dev.sh and deploy/test.sh: root for the steps that need
# it, Debian packages, and cargo on PATH.

# as_root CMD...: runs CMD as root, directly when root, else through sudo.
# Only the steps that need root go through it, so the build, target/ and
# ~/.cargo stay the invoking user's.
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "$(basename "$0"): needs root for \`$*\`: run it as root, or install sudo" >&2
    exit 1
  fi
}

# can_root: as_root can run something.
can_root() { [ "$(id -u)" = 0 ] || command -v sudo >/dev/null; }

# apt_install PKG...: installs the packages; nothing to do for none.
apt_install() {
  [ $# -gt 0 ] || return 0
  if ! can_root; then
    echo "$(basename "$0"): missing $*: install them, or run this as root or with sudo installed" >&2
    exit 1
  fi
  echo "installing: $*" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# rustup puts cargo on PATH only for shells started after it installed it.
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
  . "$HOME/.cargo/env"
fi
