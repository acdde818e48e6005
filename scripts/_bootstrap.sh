# Sourced by scripts/test, scripts/demo and scripts/bench: installs what is missing, idempotently.
#   - Debian packages for the real servers (mosquitto, influxdb 1.x, victoria-metrics, socat, dbus-daemon)
#   - a virtual environment in .venv with healthhut installed (editable) and its dev extras
# Re-running is cheap: apt is asked only for missing binaries, pip only when pyproject.toml changed.
set -euo pipefail

HH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HH_VENV="${HH_VENV:-$HH_ROOT/.venv}"
HH_PYTHON="${HH_PYTHON:-python3}"

hh_log() { printf '[bootstrap] %s\n' "$*" >&2; }

hh_install_apt() {
    local -A need=([mosquitto]=mosquitto [influxd]=influxdb [victoria-metrics]=victoria-metrics [socat]=socat
                   [dbus-daemon]=dbus-daemon [cc]=gcc [openssl]=openssl [systemd-analyze]=systemd)
    local missing=() bin
    for bin in "${!need[@]}"; do
        if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$bin" >/dev/null 2>&1; then
            missing+=("${need[$bin]}")
        fi
    done
    # dbus-python (under python-dbusmock, the fake BlueZ of the BLE tests) builds from source against these.
    pkg-config --exists dbus-1 glib-2.0 2>/dev/null || missing+=(pkg-config libdbus-1-dev libglib2.0-dev)
    # python3-venv is what Debian splits venv into; without it "python3 -m venv" fails.
    if ! "$HH_PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        missing+=(python3-venv)
    fi
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { hh_log "need root or sudo to install: ${missing[*]}"; return 1; }
        sudo=(sudo)
    fi
    hh_log "installing Debian packages: ${missing[*]}"
    # policy-rc.d-free machines would start the packaged services; we never use them, so stop them.
    "${sudo[@]}" apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    for svc in mosquitto influxdb victoria-metrics; do
        "${sudo[@]}" systemctl disable --now "$svc" >/dev/null 2>&1 || true
    done
}

hh_install_venv() {
    if [ ! -x "$HH_VENV/bin/python" ]; then
        hh_log "creating virtual environment $HH_VENV"
        "$HH_PYTHON" -m venv "$HH_VENV"
    fi
    local stamp="$HH_VENV/.healthhut-installed" want
    want="$(cat "$HH_ROOT/pyproject.toml" "$HH_ROOT/setup.py" | sha256sum | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        hh_log "installing healthhut and its dependencies into $HH_VENV"
        "$HH_VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
        "$HH_VENV/bin/python" -m pip install -q -e "$HH_ROOT[dev]"
        echo "$want" > "$stamp"
    fi
}

hh_bootstrap() {
    hh_install_apt
    hh_install_venv
    export PATH="$HH_VENV/bin:$PATH:/usr/sbin"
}
