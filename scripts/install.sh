#!/usr/bin/env bash
# Install defender-agent on Debian / Raspberry Pi OS: system user, directories,
# a virtualenv under /opt, hardened systemd units. Idempotent: run it again to
# upgrade. `--uninstall` removes what it added and keeps config and state
# unless `--purge` is given. See docs/INSTALL.md.
#
# The user and the directories come from systemd/defender-agent.sysusers and
# systemd/defender-agent.tmpfiles, the files the Debian package ships: one
# definition for both installs.
set -euo pipefail

NAME=defender-agent
MARKER="(installed by scripts/install.sh)"

usage() {
    cat <<EOF
usage: scripts/install.sh [options]
       scripts/install.sh --uninstall [--purge] [options]

  --from PATH              source checkout or wheel to install (default: this repository)
  --prefix DIR             install under DIR instead of / (a staging root, used by the tests);
                           users are created in DIR/etc/passwd, systemctl is never called
  --user NAME              service user and group (default: $NAME)
  --python PATH            interpreter for the virtualenv (default: python3, needs >= 3.9)
  --with-bootstrap         also install the 'bootstrap' extra (boto3) for defender-agent bootstrap
  --system-site-packages   let the virtualenv use Debian packages (python3-psutil, ...),
                           for 32-bit Raspberry Pi OS where PyPI has no psutil/awscrt wheel
  --pip-args "ARGS"        extra arguments for pip install (e.g. "--no-deps")
  --skip-venv              do not create or update the virtualenv
  --no-systemctl           do not call systemctl (implied by --prefix)
  --uninstall              remove the program, units and symlink; keep /etc/$NAME and /var/lib/$NAME
  --purge                  with --uninstall: also remove config, certificates, state and the user
  -h, --help               this text
EOF
}

die() { echo "install.sh: error: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FROM=$(cd "$HERE/.." && pwd)
PREFIX=/
SERVICE_USER=$NAME
PYTHON=python3
EXTRAS=
SITE=
PIP_ARGS=
SKIP_VENV=0
SYSTEMCTL=1
UNINSTALL=0
PURGE=0

while [ $# -gt 0 ]; do
    case "$1" in
        --from) FROM=${2:?--from needs a path}; shift 2 ;;
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
        --user) SERVICE_USER=${2:?--user needs a name}; shift 2 ;;
        --python) PYTHON=${2:?--python needs a path}; shift 2 ;;
        --with-bootstrap) EXTRAS="[bootstrap]"; shift ;;
        --system-site-packages) SITE=--system-site-packages; shift ;;
        --pip-args) PIP_ARGS=${2?--pip-args needs a value}; shift 2 ;;
        --skip-venv) SKIP_VENV=1; shift ;;
        --no-systemctl) SYSTEMCTL=0; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --purge) PURGE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

[ "$(id -u)" = 0 ] || die "run as root (sudo scripts/install.sh ...)"
[ "$PURGE" = 0 ] || [ "$UNINSTALL" = 1 ] || die "--purge only goes with --uninstall"
case "$SERVICE_USER" in
    ''|*[!a-z0-9_-]*) die "--user: use lower-case letters, digits, - and _ only" ;;
esac
[ -d "$PREFIX" ] || die "--prefix $PREFIX: no such directory"
PREFIX=$(cd "$PREFIX" && pwd)
if [ "$PREFIX" = / ]; then
    R=""
else
    R=$PREFIX
    SYSTEMCTL=0
fi
# Only call systemctl where systemd is the running init.
[ -d /run/systemd/system ] || SYSTEMCTL=0

OPT=/opt/$NAME
VENV=$OPT/venv
ETC=/etc/$NAME
CERTS=$ETC/certs
STATE=/var/lib/$NAME
UNITDIR=/etc/systemd/system
UNITS="$NAME.service $NAME-bootstrap.service"
LINK=/usr/local/bin/$NAME

# --- helpers -------------------------------------------------------------

# Numeric ids from the target root's own passwd/group, so a --prefix install
# never depends on (or changes) the host's users.
uid_of() { awk -F: -v n="$1" '$1 == n { print $3; exit }' "$R/etc/passwd" 2>/dev/null; }
gid_of() { awk -F: -v n="$1" '$1 == n { print $3; exit }' "$R/etc/group" 2>/dev/null; }

# A file of systemd/ (next to this script, or in --from).
shipped() {
    local src=$FROM/systemd/$1
    [ -f "$src" ] || src=$HERE/../systemd/$1
    [ -f "$src" ] || die "$1 not found next to the script or in --from"
    cat "$src"
}
# The service user in place of the package's (--user).
as_user() { if [ "$1" = "$NAME" ]; then echo "$SERVICE_USER"; else echo "$1"; fi; }

# mkdir + owner + mode, applied every run (idempotent).
ensure_dir() { # path mode owner group
    mkdir -p "$R$1"
    chown "$3:$4" "$R$1"
    chmod "$2" "$R$1"
}

# The `d` (directory) and `z` (adjust an existing path) lines of the tmpfiles.d file, applied to the
# target root with the ids from its own passwd/group. `./install.sh` runs this; systemd-tmpfiles does
# the same for the package.
apply_tmpfiles() { # d|z|dz: which line types
    local type path mode user group uid gid
    while read -r type path mode user group _; do
        case "$type" in ''|'#'*) continue ;; esac
        case "$1" in *"$type"*) ;; *) continue ;; esac
        uid=$(uid_of "$(as_user "$user")"); gid=$(gid_of "$(as_user "$group")")
        [ -n "$uid" ] && [ -n "$gid" ] || die "tmpfiles: unknown user or group in: $type $path $user $group"
        if [ "$type" = d ]; then
            ensure_dir "$path" "$mode" "$uid" "$gid"
        elif [ -e "$R$path" ]; then
            chown "$uid:$gid" "$R$path"
            chmod "$mode" "$R$path"
        fi
    done < <(shipped "$NAME.tmpfiles")
}

create_user() {
    if [ -n "$(uid_of "$SERVICE_USER")" ]; then
        say "user $SERVICE_USER exists (uid $(uid_of "$SERVICE_USER"))"
        return
    fi
    local line comment home shell
    line=$(shipped "$NAME.sysusers" | sed -n "s/^u $NAME /u $SERVICE_USER /p")
    [ -n "$line" ] || die "$NAME.sysusers has no 'u $NAME' line"
    if command -v systemd-sysusers >/dev/null 2>&1; then
        local root_opt=()
        [ -z "$R" ] || root_opt=(--root="$R")
        systemd-sysusers "${root_opt[@]}" --inline "$line"
    else
        # u NAME ID "COMMENT" HOME SHELL
        comment=$(sed -n 's/^u [^ ]* [^ ]* "\([^"]*\)".*/\1/p' <<<"$line")
        read -r home shell <<<"$(sed 's/^u [^ ]* [^ ]* "[^"]*" //' <<<"$line")"
        local prefix_opt=()
        [ -z "$R" ] || prefix_opt=(--prefix "$R")
        useradd "${prefix_opt[@]}" --system --user-group --home-dir "$home" --no-create-home \
            --shell "$shell" --comment "$comment" "$SERVICE_USER"
    fi
    [ -n "$(uid_of "$SERVICE_USER")" ] || die "could not create user $SERVICE_USER in $R/etc/passwd"
    say "created system user $SERVICE_USER (uid $(uid_of "$SERVICE_USER"))"
}

remove_user() {
    [ -n "$(uid_of "$SERVICE_USER")" ] || return 0
    if [ -z "$R" ]; then userdel "$SERVICE_USER"; else userdel --prefix "$R" "$SERVICE_USER"; fi
    if [ -n "$(gid_of "$SERVICE_USER")" ]; then
        if [ -z "$R" ]; then groupdel "$SERVICE_USER"; else groupdel --prefix "$R" "$SERVICE_USER"; fi
    fi
    say "removed user and group $SERVICE_USER"
}

ours() { [ -f "$1" ] && grep -qF "$MARKER" "$1"; }

# The package's units, marked as ours, running the virtualenv's program, with the service user
# substituted when --user is not the default.
install_units() {
    mkdir -p "$R$UNITDIR"
    local unit
    for unit in $UNITS; do
        if [ -e "$R$UNITDIR/$unit" ] && ! ours "$R$UNITDIR/$unit"; then
            die "$UNITDIR/$unit exists and was not installed by this script; move it away first"
        fi
        { echo "# $MARKER"
          shipped "$unit" | sed -e "s|^ExecStart=/usr/bin/$NAME |ExecStart=$VENV/bin/$NAME |" \
              -e "s/^User=$NAME\$/User=$SERVICE_USER/" -e "s/^Group=$NAME\$/Group=$SERVICE_USER/"
        } > "$R$UNITDIR/$unit.tmp"
        chmod 0644 "$R$UNITDIR/$unit.tmp"
        chown 0:0 "$R$UNITDIR/$unit.tmp"
        mv -f "$R$UNITDIR/$unit.tmp" "$R$UNITDIR/$unit"
    done
    say "installed units in $UNITDIR: $UNITS"
}

write_config() {
    local cfg=$R$ETC/agent.yaml
    if [ -e "$cfg" ]; then
        say "kept existing $ETC/agent.yaml"
        return
    fi
    local tmp=$cfg.tmp
    if [ -x "$R$VENV/bin/$NAME" ]; then
        # The full example, every key documented. Its errors reach the terminal, and a failure stops
        # the install: a config written by a program that cannot start is worse than none.
        (cd / && "$R$VENV/bin/$NAME" sample-config) > "$tmp" \
            || { rm -f "$tmp"; die "'$VENV/bin/$NAME sample-config' failed (its error is above); nothing was written"; }
    else
        # --skip-venv before any venv exists: a minimal config (`defender-agent sample-config` lists every key).
        cat > "$tmp" <<EOF
## defender-agent configuration. The full list of options with their defaults:
## \`defender-agent sample-config\`. Check with \`sudo defender-agent check\`.
##
## This file holds no secrets and must not: the private key stays in
## $CERTS (root only, mode 600) and systemd hands the service a copy
## through LoadCredential= (see $UNITDIR/$NAME.service).
thing_name: CHANGE-ME
mqtt:
  ## aws iot describe-endpoint --endpoint-type iot:Data-ATS
  endpoint: CHANGE-ME-ats.iot.REGION.amazonaws.com
  cert: $CERTS/device.pem.crt
  key: $CERTS/private.pem.key
  ca: $CERTS/AmazonRootCA1.pem
EOF
    fi
    mv "$tmp" "$cfg"
    say "wrote $ETC/agent.yaml (edit thing_name and mqtt.endpoint)"
}

# The installed program must start: --version through the console script, then the modules that
# `check` and `run` load (awscrt's MQTT client included), with the venv's own interpreter and from /,
# so nothing from the source tree can stand in. Any error is printed and stops the install.
verify_venv() {
    local version
    version=$(cd / && "$R$VENV/bin/$NAME" --version) \
        || die "the installed program does not start: '$VENV/bin/$NAME --version' failed (its error is above)"
    (cd / && "$R$VENV/bin/python" -c 'import agent.commands.check, agent.commands.run, agent.scheduler, agent.sampling, awscrt.mqtt5, awscrt.mqtt, psutil, cbor2, yaml') \
        || die "the installed program cannot load what 'check' and 'run' need (the import error is above)"
    say "installed $version into $VENV"
}

build_venv() {
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
        || die "$PYTHON is older than 3.9"
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
        || die "$PYTHON cannot create virtualenvs: apt-get install python3-venv"
    if [ ! -x "$R$VENV/bin/python" ]; then
        # shellcheck disable=SC2086
        "$PYTHON" -m venv $SITE "$R$VENV"
        say "created virtualenv $VENV"
    fi
    case "$(uname -m)" in
        armv6l|armv7l)
            say "note: 32-bit ARM: PyPI has no awscrt/psutil wheels here; pip builds them from source" \
                "(needs cmake, build-essential, python3-dev; awscrt takes a long time). See docs/INSTALL.md." ;;
    esac
    # setuptools builds the wheel through FROM/build/lib and keeps what an earlier build left there, so
    # modules since removed from the tree (0.1.0's emulator and devtools) would be installed again.
    if [ -d "$FROM/build/lib" ]; then
        rm -rf "$FROM/build/lib" "$FROM"/build/bdist.* || die "cannot remove the stale build output in $FROM/build"
    fi
    # shellcheck disable=SC2086
    "$R$VENV/bin/python" -m pip install --disable-pip-version-check --quiet --upgrade $PIP_ARGS "$FROM$EXTRAS"
    verify_venv
}

# --- uninstall -----------------------------------------------------------

if [ "$UNINSTALL" = 1 ]; then
    if [ "$SYSTEMCTL" = 1 ]; then
        systemctl disable --now $UNITS 2>/dev/null || true
    fi
    for unit in $UNITS; do
        if ours "$R$UNITDIR/$unit"; then
            rm -f "$R$UNITDIR/$unit"
            say "removed $UNITDIR/$unit"
        elif [ -e "$R$UNITDIR/$unit" ]; then
            say "left $UNITDIR/$unit in place: not installed by this script"
        fi
    done
    [ "$SYSTEMCTL" = 0 ] || systemctl daemon-reload
    if [ -L "$R$LINK" ] && [ "$(readlink "$R$LINK")" = "$VENV/bin/$NAME" ]; then
        rm -f "$R$LINK"
    fi
    rm -rf "$R$OPT"
    say "removed $OPT and $LINK"
    if [ "$PURGE" = 1 ]; then
        rm -rf "$R$ETC" "$R$STATE" "$R/var/lib/private/$NAME"
        say "purged $ETC (config and certificates) and $STATE (outbox and counters)"
        remove_user
    else
        say "kept $ETC (config, certificates), $STATE (state) and user $SERVICE_USER; --purge removes them"
    fi
    exit 0
fi

# --- install -------------------------------------------------------------

[ -e "$FROM" ] || die "--from $FROM: not found"
create_user
[ -n "$(gid_of "$SERVICE_USER")" ] || die "group $SERVICE_USER missing from $R/etc/group"

ensure_dir "$OPT" 0755 0 0
apply_tmpfiles d

[ "$SKIP_VENV" = 1 ] || build_venv
mkdir -p "$R$(dirname "$LINK")"
if [ -L "$R$LINK" ] || [ ! -e "$R$LINK" ]; then
    ln -sfn "$VENV/bin/$NAME" "$R$LINK"
else
    say "left $LINK alone: it is not a symlink"
fi

write_config
# The config's mode and owner, and the private key, when already present, root only (LoadCredential=
# reads it as root and gives the service its own copy): the tmpfiles `z` lines.
apply_tmpfiles z
install_units
# The PKCS#11 drop-ins, disabled: docs/HARDWARE-KEYS.md says when and how to copy one to
# /etc/systemd/system/$NAME.service.d/ (the package ships them in /usr/share/defender-agent/systemd).
mkdir -p "$R$OPT/share/systemd"
for dropin in pkcs11-tpm2.conf pkcs11-softhsm.conf; do
    shipped "$dropin" > "$R$OPT/share/systemd/$dropin"
    chmod 0644 "$R$OPT/share/systemd/$dropin"
done
[ "$SYSTEMCTL" = 0 ] || systemctl daemon-reload

cat <<EOF

defender-agent is installed. Next steps:
  1. Copy the device certificate, private key and Amazon root CA:
       sudo install -m 644 -o root -g $SERVICE_USER device.pem.crt   $CERTS/device.pem.crt
       sudo install -m 600 -o root -g root     private.pem.key  $CERTS/private.pem.key
       sudo install -m 644 -o root -g $SERVICE_USER AmazonRootCA1.pem $CERTS/AmazonRootCA1.pem
  2. Edit $ETC/agent.yaml: thing_name, mqtt.endpoint (no secrets in this file).
  3. Check it:        sudo $NAME check
  4. Start it:        sudo systemctl enable --now $NAME
     Watch it:        journalctl -u $NAME -f
  Custom metrics must exist in AWS IoT first: run \`$NAME bootstrap\` once with
  admin credentials (docs/INSTALL.md), or enable $NAME-bootstrap.service.
EOF
