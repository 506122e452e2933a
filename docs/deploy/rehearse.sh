#!/usr/bin/env bash
# Rehearses docs/deploy.md on this machine: runs every ```sh block of it, in order, as
# root, as printed (the one substitution: /path/to/quartchat is this checkout), on a
# throwaway copy of the machine, and checks between the steps that the chat works.
#
#   as root:  docs/deploy/rehearse.sh      (about 2 minutes; prints its time)
#
# It needs this checkout's .venv (the checks use its httpx and websockets), network
# for pip before it starts, and a kernel that lets root make namespaces and overlays.
#
# The copy: private mount, network and PID namespaces. /etc, /srv, /var, /run and
# /usr/local are overlays whose changes land in a throwaway directory (users added,
# nginx's configuration, the unit files, the data); loopback is private, so the
# guide's ports (80, 443, 8000, 8001, 6379) are free; everything started inside ends
# when the rehearsal does. nginx, PostgreSQL, Redis, Python and quartchat are real.
#
# Stand-ins for what this machine lacks (each a function below):
#   systemctl     systemd is not running: units are started from their files as systemd
#                 would (User, WorkingDirectory, EnvironmentFile, ExecStart with %i,
#                 SIGTERM to the whole process group); nginx as Debian's nginx.service
#                 does it, waiting for its PIDFile=/run/nginx.pid. Not emulated:
#                 Restart=, the sandboxing options (ProtectSystem=…), ordering.
#   apt-get       the packages are installed already (checked with dpkg); "installing"
#                 nginx, PostgreSQL or Redis starts it as Debian's packages do: nginx with
#                 Debian's own configuration, a PostgreSQL cluster of the rehearsal's own
#                 on /run/postgresql (peer authentication, as Debian's), redis-server on
#                 127.0.0.1:6379. certbot is not installed here: see the next line.
#   certbot       no Let's Encrypt here: the stand-in serves a challenge file through
#                 the given webroot and fetches it over http://<domain>/ as the CA would
#                 (so the webroot path through nginx is real), then makes a self-signed
#                 certificate under /etc/letsencrypt/live/<domain>/.
#   DNS           chat.example.org is 127.0.0.1 in the copy's /etc/hosts; curl and the
#                 checks trust the stand-in certificate ($CURL_CA_BUNDLE).
#   the network   pip installs from a wheelhouse built before the namespaces are entered
#                 (PIP_NO_INDEX, PIP_FIND_LINKS): the namespace has no route out.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
GUIDE=$REPO/docs/deploy.md
CHECK="$REPO/.venv/bin/python $REPO/docs/deploy/rehearse_check.py"

if [[ ${QUARTCHAT_REHEARSAL_INSIDE:-} != 1 ]]; then
    [[ $EUID == 0 ]] || { echo "rehearse.sh: run it as root (it needs namespaces)" >&2; exit 2; }
    WORK=$(mktemp -d /tmp/quartchat-rehearsal.XXXXXX)
    chmod 0755 "$WORK"  # the postgres user reaches its cluster in here
    echo "rehearsal: throwaway directory $WORK"
    echo "rehearsal: building the wheelhouse pip will install from (the network's stand-in)"
    # With the guide's interpreter (Debian's python3), whose version decides the wheels.
    python3_debian=/usr/bin/python3
    "$python3_debian" -m venv "$WORK/wheel-builder"
    "$WORK/wheel-builder/bin/pip" wheel -q -w "$WORK/wheels" "$REPO[scale]" hatchling
    started=$(date +%s%N)
    status=0
    QUARTCHAT_REHEARSAL_INSIDE=1 WORK=$WORK \
        unshare --mount --net --pid --fork --mount-proc --propagation private "${BASH_SOURCE[0]}" || status=$?
    seconds=$((($(date +%s%N) - started) / 1000000000))
    if [[ $status == 0 ]]; then
        rm -rf "$WORK"
        echo "rehearsal: every step of docs/deploy.md worked, in $seconds s (not counting the wheelhouse)"
    else
        echo "rehearsal: FAILED after $seconds s; logs kept in $WORK/journal" >&2
    fi
    exit "$status"
fi

# ---- inside the namespaces -------------------------------------------------------

ip link set lo up
for dir in etc srv var run usr/local; do
    name=${dir//\//-}
    mkdir -p "$WORK/overlay/$name/upper" "$WORK/overlay/$name/work"
    mount -t overlay "overlay-$name" \
        -o "lowerdir=/$dir,upperdir=$WORK/overlay/$name/upper,workdir=$WORK/overlay/$name/work" "/$dir"
done
# The machine's own PostgreSQL listens on a socket in /run/postgresql: hide it.
mount -t tmpfs -o mode=2775 tmpfs /run/postgresql
chown postgres:postgres /run/postgresql
echo "127.0.0.1 chat.example.org" >> /etc/hosts
mkdir -p "$WORK/journal"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin  # Debian root's
export PIP_NO_INDEX=1 PIP_FIND_LINKS=$WORK/wheels
STATE=$WORK/check-state.json

# ---- stand-ins -------------------------------------------------------------------

apt-get() {
    if [[ $1 == update ]]; then echo "(stand-in) apt-get update: nothing to fetch"; return; fi
    local package
    for package in "$@"; do
        [[ $package == install || $package == -y ]] && continue
        if [[ $package == certbot ]]; then
            echo "(stand-in) certbot is not installed here; the rehearsal's certbot function stands in"
            continue
        fi
        dpkg -s "$package" >/dev/null 2>&1 || { echo "(stand-in) $package is not installed on this machine" >&2; return 1; }
        echo "(stand-in) $package: installed"
        case $package in
            nginx-light) start_nginx ;;
            postgresql) start_postgresql ;;
            redis-server) start_redis ;;
        esac
    done
}

start_nginx() {  # Debian's nginx.service: ExecStartPre nginx -t, ExecStart nginx, PIDFile=
    nginx -t -q -g 'daemon on; master_process on;'
    nginx -g 'daemon on; master_process on;'
    local waited=0
    until [[ -s /run/nginx.pid ]]; do
        ((waited++ < 50)) || { echo "nginx.service: PIDFile /run/nginx.pid never appeared: systemd would wait here" >&2; return 1; }
        sleep 0.1
    done
}

stop_nginx() {  # ExecStop: start-stop-daemon --stop --retry QUIT/5 --pidfile /run/nginx.pid
    local pid
    pid=$(cat /run/nginx.pid)
    kill -QUIT "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

start_postgresql() {
    local bin=/usr/lib/postgresql/15/bin
    cd /  # the postgres user may not enter root's directory
    install -d -o postgres -g postgres -m 0700 "$WORK/postgresql"
    runuser -u postgres -- "$bin/initdb" -D "$WORK/postgresql" -A peer -E UTF8 >"$WORK/journal/initdb.log"
    runuser -u postgres -- "$bin/pg_ctl" -D "$WORK/postgresql" -l "$WORK/postgresql/server.log" -w \
        -o "-c listen_addresses='' -c unix_socket_directories=/run/postgresql" start >/dev/null
    cd - >/dev/null
}

start_redis() {
    redis-server --port 6379 --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
        --dir "$WORK" --logfile "$WORK/journal/redis.log" --pidfile "$WORK/redis.pid"
}

unit_value() {  # unit_value FILE KEY: the value of the first KEY= line
    sed -n "s/^$2=//p" "$1" | head -n 1
}

start_unit() {
    local unit=$1 instance=${1#*@} file=/etc/systemd/system/${1%@*}@.service
    [[ -f $file ]] || { echo "systemctl: unit $unit not found ($file)" >&2; return 1; }
    local user directory environment_file command line
    user=$(unit_value "$file" User)
    directory=$(unit_value "$file" WorkingDirectory)
    environment_file=$(unit_value "$file" EnvironmentFile)
    command=$(unit_value "$file" ExecStart)
    command=${command//%i/$instance}
    local -a environment=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
    while IFS= read -r line || [[ -n $line ]]; do  # systemd's rules: # and ; comments, blank lines
        [[ $line =~ ^[[:space:]]*([#\;]|$) ]] && continue
        environment+=("$line")
    done <"$environment_file"
    # shellcheck disable=SC2086  # ExecStart's words, as systemd splits them
    (cd "$directory" && exec setsid runuser -u "$user" -- env -i "${environment[@]}" $command) \
        >>"$WORK/journal/$unit.log" 2>&1 &
    echo $! >"$WORK/journal/$unit.pid"
}

stop_unit() {  # SIGTERM to the unit's processes, then wait (TimeoutStopSec)
    local pid_file=$WORK/journal/$1.pid pid
    [[ -f $pid_file ]] || return 0
    pid=$(cat "$pid_file")
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$pid_file"
}

systemctl() {
    local verb=$1 unit
    shift
    [[ $verb == daemon-reload ]] && return 0
    if [[ $verb == enable && ${1:-} == --now ]]; then verb=start; shift; fi
    for unit in "$@"; do
        if [[ $unit == nginx ]]; then
            case $verb in
                start) start_nginx ;;
                stop) stop_nginx ;;
                restart) stop_nginx; start_nginx ;;
                reload) nginx -g 'daemon on; master_process on;' -s reload ;;  # Debian's ExecReload
            esac
            continue
        fi
        local matched=("$unit")
        if [[ $unit == *'*'* ]]; then  # a pattern matches the running instances
            matched=()
            for pid_file in "$WORK"/journal/*.pid; do
                [[ -e $pid_file ]] || continue
                local name=${pid_file##*/}
                name=${name%.pid}
                # shellcheck disable=SC2053  # a glob on purpose
                [[ $name == $unit ]] && matched+=("$name")
            done
        fi
        for one in "${matched[@]}"; do
            case $verb in
                start) start_unit "$one" ;;
                stop) stop_unit "$one" ;;
                restart) stop_unit "$one"; start_unit "$one" ;;
            esac
        done
    done
}

certbot() {
    local verb=$1 webroot="" domain="" dry_run=0
    shift
    while (($#)); do
        case $1 in
            -w) webroot=$2; shift ;;
            -d) domain=$2; shift ;;
            --deploy-hook) shift ;;
            --dry-run) dry_run=1 ;;
        esac
        shift
    done
    if [[ $verb == renew ]]; then
        webroot=$(cat "$WORK/certbot-webroot") domain=$(cat "$WORK/certbot-domain")
    fi
    local token
    token=$(openssl rand -hex 16)
    mkdir -p "$webroot/.well-known/acme-challenge"
    echo "$token" >"$webroot/.well-known/acme-challenge/$token"
    [[ $(curl -s "http://$domain/.well-known/acme-challenge/$token") == "$token" ]] ||
        { echo "(stand-in) certbot: http://$domain/.well-known/acme-challenge/ does not serve $webroot" >&2; return 1; }
    rm "$webroot/.well-known/acme-challenge/$token"
    echo "(stand-in) certbot: the challenge was served through nginx from $webroot"
    if [[ $verb == certonly ]]; then
        echo "$webroot" >"$WORK/certbot-webroot"
        echo "$domain" >"$WORK/certbot-domain"
        mkdir -p "/etc/letsencrypt/live/$domain"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$domain" -addext "subjectAltName=DNS:$domain" \
            -keyout "/etc/letsencrypt/live/$domain/privkey.pem" -out "/etc/letsencrypt/live/$domain/fullchain.pem" 2>/dev/null
        export CURL_CA_BUNDLE=/etc/letsencrypt/live/$domain/fullchain.pem
    elif ((dry_run)); then
        echo "(stand-in) certbot renew --dry-run: the renewal's challenge works"
    fi
}

stop_everything() {
    systemctl stop 'quartchat@*' || true
    [[ -s /run/nginx.pid ]] && stop_nginx || true
    [[ -f $WORK/redis.pid ]] && kill "$(cat "$WORK/redis.pid")" 2>/dev/null || true
    [[ -d $WORK/postgresql ]] && runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$WORK/postgresql" -m fast stop >/dev/null || true
}
trap stop_everything EXIT

# ---- the rehearsal's own checks, after the step whose block contains the pattern --

after_block() {
    local block=$1
    case $block in
        *"systemctl restart nginx"*)
            $CHECK "$STATE" static
            $CHECK "$STATE" signin "rehearsal-ann"
            $CHECK "$STATE" say lobby "on sqlite"
            ;;
        *"db backup"*)
            $CHECK "$STATE" say lobby "after the backup"
            $CHECK "$STATE" history lobby "on sqlite" "after the backup"
            ;;
        *"install -o quartchat -g quartchat -m 0640 /srv/quartchat/data/backup-"*)
            curl -sf --retry 30 --retry-connrefused --retry-delay 1 https://chat.example.org/healthz >/dev/null
            $CHECK "$STATE" history lobby "on sqlite"
            ;;
        *"systemctl enable --now quartchat@8000 quartchat@8001"*)
            $CHECK "$STATE" signed-in  # the move kept the key: the SQLite-era cookie still works
            $CHECK "$STATE" history lobby "on sqlite"
            $CHECK "$STATE" across lobby 8000 8001
            $CHECK "$STATE" across lobby 8001 8000
            $CHECK "$STATE" say lobby "on postgresql"
            ;;
        *"pg_dump -Fc"*)
            $CHECK "$STATE" say lobby "after the dump"
            ;;
        *"pg_restore"*)
            curl -sf --retry 30 --retry-connrefused --retry-delay 1 https://chat.example.org/healthz >/dev/null
            $CHECK "$STATE" history lobby "on sqlite" "from 8000 to 8001" "from 8001 to 8000" "on postgresql"
            $CHECK "$STATE" signed-in
            ;;
    esac
}

# ---- the guide -----------------------------------------------------------------

blocks=$WORK/blocks
mkdir -p "$blocks"
# Each ```sh block (not ```sh alternative) into its own file, in order.
awk -v dir="$blocks" '
    /^```sh$/ { n++; file = sprintf("%s/%02d.sh", dir, n); inside = 1; next }
    /^```/    { inside = 0; next }
    inside    { print > file }
' "$GUIDE"

cd /root
for file in "$blocks"/*.sh; do
    block=$(sed "s#/path/to/quartchat#$REPO#g" "$file")
    printf '\n==== docs/deploy.md, block %s ====\n%s\n----\n' "$(basename "$file" .sh)" "$block"
    eval "$block"
    after_block "$block"
done
echo
echo "rehearsal: all $(find "$blocks" -name '*.sh' | wc -l) blocks ran"
