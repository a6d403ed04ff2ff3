#!/usr/bin/env bash
# Install (or upgrade) the pkgline line controller on a Debian-like host with systemd.
#
#   sudo deploy/install.sh [--dry-run] [--no-start] [--operator NAME]... [--python PYTHON]
#
# Idempotent: run it again after `git pull` to upgrade. It
#   1. creates the system group and user `pkgline` (no login shell),
#   2. installs this checkout into the virtualenv /opt/pkgline/.venv (the service stops first
#      when it runs, so that code and schema change together),
#   3. creates /etc/pkgline/line.toml from deploy/line.example.toml and
#      /etc/pkgline/environment (the database URL), only when they do not exist,
#   4. creates /var/lib/pkgline (0700) and the SQLite database in it (0600), both the service
#      user's alone, and runs `pkgline db upgrade` as the service user; on a PostgreSQL on
#      this host, as the local `postgres` account: deploy/postgresql-roles.sql, `pkgline db
#      upgrade --as-role pkgline_owner` (the tables' owner, not the server's role) and the
#      script again (the server's role may only append to the history),
#   5. links /usr/local/bin/pkgline and gives members of group pkgline the server's socket
#      at login (operators hold no database credentials),
#   6. installs, enables and (re)starts pkgline.service and pkgline-api.service (the pkgline
#      server on /run/pkgline/api.sock: the operators' lot commands go through it),
#   7. adds the operators named with --operator to group pkgline.
# --dry-run prints what it would do and changes nothing (no root needed).
# See docs/operations.md.
set -euo pipefail

SERVICE_USER=pkgline
SERVICE_GROUP=pkgline
PREFIX=/opt/pkgline
VENV=$PREFIX/.venv
CONFIG_DIR=/etc/pkgline
STATE_DIR=/var/lib/pkgline
UNIT=pkgline.service
UNIT_PATH=/etc/systemd/system/$UNIT
API_UNIT=pkgline-api.service
API_UNIT_PATH=/etc/systemd/system/$API_UNIT
API_SOCKET=/run/pkgline/api.sock
PROFILE_SNIPPET=/etc/profile.d/pkgline.sh
CLI_LINK=/usr/local/bin/pkgline
DEFAULT_DB=sqlite:///$STATE_DIR/pkgline.db
OWNER_ROLE=pkgline_owner
REPORTS_ROLE=pkgline_reports

CHECKOUT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DRY_RUN=0
START=1
PYTHON=python3
OPERATORS=()

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

while (($#)); do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --no-start) START=0 ;;
        --operator)
            [[ $# -ge 2 && -n $2 ]] || { echo "install.sh: --operator needs a user name" >&2; exit 2; }
            OPERATORS+=("$2")
            shift
            ;;
        --python)
            [[ $# -ge 2 && -n $2 ]] || { echo "install.sh: --python needs an interpreter" >&2; exit 2; }
            PYTHON=$2
            shift
            ;;
        -h | --help) usage; exit 0 ;;
        *) echo "install.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

# Run a command that changes the system, or only show it with --dry-run.
run() {
    printf '    +'
    local word
    for word in "$@"; do
        if [[ $word =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then printf ' %s' "$word"; else printf ' %s' "${word@Q}"; fi
    done
    printf '\n'
    if ((!DRY_RUN)); then
        "$@"
    fi
}

# Write stdin to a file with a mode and owner (shown, not written, with --dry-run).
write_file() {
    local path=$1 mode=$2 owner=$3
    local content
    content=$(cat)
    printf '    + write %s (mode %s, owner %s)\n' "$path" "$mode" "$owner"
    if ((DRY_RUN)); then
        printf '%s\n' "$content" | sed 's/^/      | /'
        return
    fi
    local tmp
    tmp=$(mktemp "$path.XXXXXX")
    printf '%s\n' "$content" >"$tmp"
    chmod "$mode" "$tmp"
    chown "$owner" "$tmp"
    mv -f "$tmp" "$path"
}

# --- checks ---------------------------------------------------------------------------------
if ((DRY_RUN)); then
    echo "install.sh --dry-run: showing what would be done; nothing is changed."
elif ((EUID != 0)); then
    die "run as root (sudo $0), or with --dry-run to see what it would do"
fi
for tool in systemctl useradd groupadd usermod setpriv; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        if ((DRY_RUN)); then
            note "warning: '$tool' not found (needed for a real installation)"
        else
            die "'$tool' not found: this script is for Debian-like hosts with systemd"
        fi
    fi
done
[[ -f $CHECKOUT/pyproject.toml && -f $CHECKOUT/deploy/$UNIT ]] ||
    die "$CHECKOUT does not look like a pkgline checkout (no pyproject.toml or deploy/$UNIT)"
if ! "$PYTHON" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    message="$PYTHON is missing, older than 3.11, or has no venv module (Debian: apt-get install python3-venv)"
    if ((DRY_RUN)); then note "warning: $message"; else die "$message"; fi
fi

unit_active=0
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$UNIT" 2>/dev/null; then
    unit_active=1
fi
api_active=0
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$API_UNIT" 2>/dev/null; then
    api_active=1
fi

# --- 1. user and group ----------------------------------------------------------------------
step "System group and user '$SERVICE_USER'"
if getent group "$SERVICE_GROUP" >/dev/null; then
    note "group $SERVICE_GROUP exists"
else
    run groupadd --system "$SERVICE_GROUP"
fi
if getent passwd "$SERVICE_USER" >/dev/null; then
    note "user $SERVICE_USER exists"
else
    run useradd --system --gid "$SERVICE_GROUP" --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "pkgline line controller" "$SERVICE_USER"
fi

# --- 2. the code ----------------------------------------------------------------------------
step "pkgline from $CHECKOUT into $VENV"
if ((unit_active)); then
    note "$UNIT is running: stopping it while code and schema change"
    run systemctl stop "$UNIT"
fi
if ((api_active)); then
    note "$API_UNIT is running: stopping it while code and schema change"
    run systemctl stop "$API_UNIT"
fi
run install -d -m 0755 -o root -g root "$PREFIX"
if [[ -x $VENV/bin/python ]]; then
    note "virtualenv $VENV exists"
else
    run "$PYTHON" -m venv "$VENV"
fi
# Dependencies first; then pkgline itself again even when its version did not change.
run "$VENV/bin/pip" install --quiet --upgrade "$CHECKOUT"
run "$VENV/bin/pip" install --quiet --force-reinstall --no-deps "$CHECKOUT"
run ln -sfn "$VENV/bin/pkgline" "$CLI_LINK"

# --- 3. configuration -----------------------------------------------------------------------
step "Configuration in $CONFIG_DIR"
run install -d -m 0750 -o root -g "$SERVICE_GROUP" "$CONFIG_DIR"
config_created=0
if [[ -e $CONFIG_DIR/line.toml ]]; then
    note "$CONFIG_DIR/line.toml exists: kept"
else
    example=$CHECKOUT/deploy/line.example.toml
    if [[ ! -f $example ]]; then
        if ((DRY_RUN)); then note "warning: $example is missing"; else die "$example is missing"; fi
    fi
    run install -m 0640 -o root -g "$SERVICE_GROUP" "$example" "$CONFIG_DIR/line.toml"
    config_created=1
fi
if [[ -e $CONFIG_DIR/environment ]]; then
    note "$CONFIG_DIR/environment exists: kept"
else
    write_file "$CONFIG_DIR/environment" 0600 root:root <<EOF
# pkgline: read by systemd for pkgline.service and pkgline-api.service (EnvironmentFile=),
# by nobody else: operators go through the server. KEY=VALUE lines, no quotes. PKGLINE_DB
# takes precedence over "database" in line.toml.
# PostgreSQL instead (peer authentication, no password): PKGLINE_DB=postgresql:///pkgline?host=/run/postgresql
PKGLINE_DB=$DEFAULT_DB
EOF
fi

# --- 4. the database ------------------------------------------------------------------------
step "Database schema (as user $SERVICE_USER)"
# 0700, like the units' StateDirectoryMode: the database is the server's alone.
run install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_GROUP" "$STATE_DIR"
run chmod 0700 "$STATE_DIR"
if [[ -e $CONFIG_DIR/environment ]]; then
    run chmod 0600 "$CONFIG_DIR/environment"
    run chown root:root "$CONFIG_DIR/environment"
fi
db_url=$DEFAULT_DB
if [[ -r $CONFIG_DIR/environment ]]; then
    configured=$(sed -n 's/^PKGLINE_DB=//p' "$CONFIG_DIR/environment" | tail -n 1)
    db_url=${configured:-$DEFAULT_DB}
fi
if [[ $db_url == sqlite* ]]; then shown=$db_url; else shown="${db_url%%://*}://…"; fi
note "database: $shown (from $CONFIG_DIR/environment, else the default)"
# The SQLite file and its -wal and -shm files (SQLite gives them the database file's mode):
# the service user's, 0600. Direct mode (the CLI on the file) is then the service user's
# alone; an earlier installation's group-writable files are taken back.
if [[ $db_url == sqlite:///* ]]; then
    db_file=${db_url#sqlite:///}
    db_file=${db_file%%\?*}
    if [[ -e $db_file ]]; then
        for file in "$db_file" "$db_file-wal" "$db_file-shm"; do
            if [[ -e $file ]]; then
                run chown "$SERVICE_USER:$SERVICE_GROUP" "$file"
                run chmod 0600 "$file"
            fi
        done
    elif [[ $db_file == "$STATE_DIR"/* ]]; then
        run install -m 0600 -o "$SERVICE_USER" -g "$SERVICE_GROUP" /dev/null "$db_file"
    else
        note "warning: $db_file is outside $STATE_DIR: make sure user $SERVICE_USER can write it and its directory"
    fi
fi
# PostgreSQL on this host: three roles (deploy/postgresql-roles.sql, run as the local
# `postgres` account): $OWNER_ROLE (no login) owns the schema and every table, the server's
# role (the service user's name, peer authentication) reads and writes what the server needs
# and only appends to the history, $REPORTS_ROLE reads. The script first (the owner exists
# and owns the schema: an earlier installation's tables, which the server's role owned, are
# handed over), then the upgrade as postgres acting as the owner (`--as-role`: SET ROLE at
# connection, over the local socket, no password anywhere), then the script again (grants on
# the tables the upgrade made). A database on another host: its DBA does the same (the
# notes below); here the upgrade is tried as the service user, as on SQLite.
pg_local=0
if [[ $db_url == postgres* ]]; then
    pg_db=${db_url%%\?*} # the query first: ?host=/run/postgresql has a slash too
    pg_db=${pg_db##*/}
    pg_host=$(sed -E 's|^[a-z]+://([^@/]*@)?([^/:?]*).*|\2|' <<<"$db_url")
    roles_sql=$CHECKOUT/deploy/postgresql-roles.sql
    roles_vars=(-v owner_role="$OWNER_ROLE" -v server_role="$SERVICE_USER" -v reports_role="$REPORTS_ROLE")
    if [[ -z $pg_host || $pg_host == localhost || $pg_host == 127.0.0.1 ]] && getent passwd postgres >/dev/null; then
        pg_local=1
    fi
fi
if ((pg_local)); then
    pg_home=$(getent passwd postgres | cut -d: -f6)
    run setpriv --reuid=postgres --regid=postgres --init-groups \
        psql -X -q "${roles_vars[@]}" -d "$pg_db" -f "$roles_sql"
    run setpriv --reuid=postgres --regid=postgres --init-groups \
        env -i PATH=/usr/bin:/bin HOME="$pg_home" PKGLINE_DB="postgresql:///$pg_db" \
        sh -c 'umask 0077 && exec "$0" db upgrade --as-role "$1"' "$VENV/bin/pkgline" "$OWNER_ROLE"
    run setpriv --reuid=postgres --regid=postgres --init-groups \
        psql -X -q "${roles_vars[@]}" -d "$pg_db" -f "$roles_sql"
else
    # setpriv, not su/runuser: no PAM session that could reset the umask (0077, as the units').
    run setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_GROUP" --init-groups \
        env -i PATH=/usr/bin:/bin HOME="$STATE_DIR" PKGLINE_DB="$db_url" \
        sh -c 'umask 0077 && exec "$0" db upgrade' "$VENV/bin/pkgline" || upgraded=$?
    if [[ $db_url == postgres* ]]; then
        note "PostgreSQL on another host: as its superuser (or a member of $OWNER_ROLE for the upgrade), run"
        note "  psql ${roles_vars[*]} -d $pg_db -f $roles_sql"
        note "  pkgline db upgrade --as-role $OWNER_ROLE --db postgresql://YOU@$pg_host/$pg_db"
        note "  psql ${roles_vars[*]} -d $pg_db -f $roles_sql"
        if ((${upgraded:-0})); then
            die "the schema upgrade failed as user $SERVICE_USER: once $OWNER_ROLE owns the tables, the upgrade is the DBA's (above, docs/operations.md); then run this again"
        fi
    fi
    if ((${upgraded:-0})); then exit "$upgraded"; fi
fi

# --- 5. operators' shell --------------------------------------------------------------------
step "The CLI for members of group $SERVICE_GROUP"
write_file "$PROFILE_SNIPPET" 0644 root:root <<'EOF'
# pkgline (installed by deploy/install.sh): members of group pkgline go through the pkgline
# server (pkgline-api.service), as the user it knows them as (docs/api.md); the database is
# the server's alone (no database URL or credentials for operators).
if [ -z "${PKGLINE_SERVER:-}" ]; then
    export PKGLINE_SERVER=unix:///run/pkgline/api.sock
fi
EOF

# --- 6. the service -------------------------------------------------------------------------
step "systemd unit $UNIT_PATH"
run install -m 0644 -o root -g root "$CHECKOUT/deploy/$UNIT" "$UNIT_PATH"
run systemctl daemon-reload
if ((!START)); then
    run systemctl enable "$UNIT"
    note "not started (--no-start): systemctl start $UNIT"
elif ((config_created && !unit_active)); then
    # A fresh line.toml is the example's simulated line: the controller would look for tools
    # that are not there. Enabled, so it starts at the next boot; start it once it is edited.
    run systemctl enable "$UNIT"
    note "not started: $CONFIG_DIR/line.toml is the example; edit it, then: systemctl start $UNIT"
else
    run systemctl enable "$UNIT"
    run systemctl restart "$UNIT"
fi
step "systemd unit $API_UNIT_PATH (the pkgline server, socket $API_SOCKET)"
run install -m 0644 -o root -g root "$CHECKOUT/deploy/$API_UNIT" "$API_UNIT_PATH"
run systemctl daemon-reload
run systemctl enable "$API_UNIT"
if ((START)); then
    run systemctl restart "$API_UNIT"
else
    note "not started (--no-start): systemctl start $API_UNIT"
fi
note "each operator needs a pkgline user of their OS account name (admin: pkgline user add NAME --name ... --role operator)"

# --- 7. operators ---------------------------------------------------------------------------
step "Operators (group $SERVICE_GROUP)"
for name in "${OPERATORS[@]}"; do
    if ! id "$name" >/dev/null 2>&1; then
        if ((DRY_RUN)); then note "warning: no user '$name'"; else die "no user '$name'"; fi
    fi
    if id -nG "$name" 2>/dev/null | tr ' ' '\n' | grep -qx "$SERVICE_GROUP"; then
        note "$name is in group $SERVICE_GROUP"
    else
        run usermod -aG "$SERVICE_GROUP" "$name"
    fi
done
note "add an operator:  usermod -aG $SERVICE_GROUP NAME   (takes effect at their next login)"

step "Done"
note "status:  systemctl status $UNIT $API_UNIT"
note "logs:    journalctl -u pkgline -o cat | jq"
