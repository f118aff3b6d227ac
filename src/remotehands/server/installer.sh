#!/bin/sh
# Installs the remotehands agent from the fleet server @SERVER@ and enrolls this device:
#   curl -sSL @SERVER@/install | sh -s -- --token ekvent_... [options] [-- agent options]
#
# The server serves this file with @SERVER@ replaced by its public address
# (remotehands.server.install.install_script). With REMOTEHANDS_INSTALL_LIBRARY=1 the script
# only defines its functions (the tests source it and call them one by one).
set -eu

SERVER='@SERVER@'
TOKEN=''
VENV="${HOME:-.}/.remotehands/venv"
PYTHON=''
REUSE=0
SERVICE=auto
VENV_GIVEN=0
CONSUMED=0

usage() {
  cat <<'USAGE'
Installs the remotehands agent from its fleet server and enrolls this device.

  curl -sSL @SERVER@/install | sh -s -- --token ekvent_... [options] [-- agent options]

Options:
  --token TOKEN           the enrollment token (required; an admin creates one with
                          POST /v1/devices/enrollment)
  --venv DIR              where to install (default: ~/.remotehands/venv)
  --python PYTHON         the Python (3.11 or newer) to create the environment with
  --server URL            another address of the server (default: @SERVER@)
  --reuse-site-packages   let the environment see that Python's own packages and install
                          only remotehands itself (no dependencies, no network)
  --service               install the agent as a systemd service (remotehands-agent)
  --no-service            run the agent in the foreground instead
  -- ARGS...              passed on to `remotehands agent`

Run as root on a machine where systemd runs, it installs into /opt/remotehands/venv and leaves
an enabled, running remotehands-agent service (`remotehands agent install-service`); else it
runs the agent in the foreground. With REMOTEHANDS_INSTALL_DRY_RUN=1 the final command is
printed instead of run.
USAGE
}

say() { printf 'remotehands install: %s\n' "$*" >&2; }

die() {
  say "$*"
  exit 1
}

need_value() { [ "$2" -ge 2 ] || die "$1 needs a value (see --help)"; }

# Reads the installer's options into TOKEN, VENV, PYTHON, SERVER and REUSE; CONSUMED is how
# many arguments they took (the caller shifts them; what follows -- is for the agent).
parse_args() {
  CONSUMED=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --token) need_value "$1" $#; TOKEN=$2; shift 2; CONSUMED=$((CONSUMED + 2)) ;;
      --token=*) TOKEN=${1#--token=}; shift; CONSUMED=$((CONSUMED + 1)) ;;
      --venv) need_value "$1" $#; VENV=$2; VENV_GIVEN=1; shift 2; CONSUMED=$((CONSUMED + 2)) ;;
      --venv=*) VENV=${1#--venv=}; VENV_GIVEN=1; shift; CONSUMED=$((CONSUMED + 1)) ;;
      --python) need_value "$1" $#; PYTHON=$2; shift 2; CONSUMED=$((CONSUMED + 2)) ;;
      --python=*) PYTHON=${1#--python=}; shift; CONSUMED=$((CONSUMED + 1)) ;;
      --server) need_value "$1" $#; SERVER=$2; shift 2; CONSUMED=$((CONSUMED + 2)) ;;
      --server=*) SERVER=${1#--server=}; shift; CONSUMED=$((CONSUMED + 1)) ;;
      --reuse-site-packages) REUSE=1; shift; CONSUMED=$((CONSUMED + 1)) ;;
      --service) SERVICE=1; shift; CONSUMED=$((CONSUMED + 1)) ;;
      --no-service) SERVICE=0; shift; CONSUMED=$((CONSUMED + 1)) ;;
      -h|--help) usage; exit 0 ;;
      --) CONSUMED=$((CONSUMED + 1)); break ;;
      *) die "unknown option $1 (options go before --, agent options after it)" ;;
    esac
  done
  [ -n "$TOKEN" ] \
    || die "missing --token ekvent_... (an admin creates one: POST /v1/devices/enrollment)"
  SERVER=${SERVER%/}
  if [ "$SERVICE" = auto ]; then
    if [ "$(id -u)" = 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
    then
      SERVICE=1
    else
      SERVICE=0
    fi
  fi
  # A service runs as its own user, who cannot reach root's home: a shared place instead.
  if [ "$SERVICE" = 1 ] && [ "$VENV_GIVEN" = 0 ]; then
    VENV=/opt/remotehands/venv
  fi
}

# Whether $1 runs and is Python 3.11 or newer.
python_ok() {
  command -v "$1" >/dev/null 2>&1 \
    && "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

# Sets PYTHON to the newest suitable Python on the PATH, unless --python chose one.
find_python() {
  [ -z "$PYTHON" ] || return 0
  for candidate in python3.13 python3.12 python3.11 python3; do
    if python_ok "$candidate"; then
      PYTHON=$candidate
      return 0
    fi
  done
  die "remotehands needs Python 3.11 or newer (with venv): install python3"
}

make_venv() {
  [ ! -x "$VENV/bin/python" ] || return 0
  say "creating the environment $VENV"
  mkdir -p "$(dirname "$VENV")"
  if [ "$REUSE" = 1 ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV" \
      || die "could not create $VENV (on Debian/Ubuntu: apt-get install python3-venv)"
  else
    "$PYTHON" -m venv "$VENV" \
      || die "could not create $VENV (on Debian/Ubuntu: apt-get install python3-venv)"
  fi
}

install_package() {
  package="remotehands[agent] @ $SERVER/install/remotehands.tar.gz"
  say "installing remotehands from $SERVER"
  if [ "$REUSE" = 1 ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      --no-deps --no-build-isolation --force-reinstall "$package" \
      || die "pip could not install remotehands from $SERVER"
  else
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$package" \
      || die "pip could not install remotehands from $SERVER"
  fi
}

main() {
  parse_args "$@"
  shift "$CONSUMED"
  find_python
  make_venv
  install_package
  run_agent "$@"
}

# Runs the agent with the options "$@": as a systemd service when SERVICE=1, else in the
# foreground (with REMOTEHANDS_INSTALL_DRY_RUN set, prints the command instead).
run_agent() {
  if [ "$SERVICE" = 1 ]; then
    set -- "$VENV/bin/remotehands" agent install-service --server "$SERVER" --token "$TOKEN" \
      -- "$@"
  else
    set -- "$VENV/bin/remotehands" agent --server "$SERVER" --token "$TOKEN" "$@"
  fi
  if [ -n "${REMOTEHANDS_INSTALL_DRY_RUN:-}" ]; then
    printf '%s\n' "$*"
    exit 0
  fi
  if [ "$SERVICE" = 1 ]; then
    say "installing the agent as the systemd service remotehands-agent"
  else
    say "starting the agent"
  fi
  exec "$@"
}

if [ -z "${REMOTEHANDS_INSTALL_LIBRARY:-}" ]; then
  main "$@"
fi
