#!/bin/sh
# One pod of the gateway's Redis group runs a redis and a sentinel; this script starts each of them,
# answers the readiness probe, and hands mastership away before a planned stop.
#
#   redis-gateway.sh redis | sentinel | ready | prestop
#
# The master is whoever the sentinels say it is. Only when no sentinel of the group knows one (the very
# first start, or the whole group down at once) does pod 0 bootstrap as master. A restarted pod that the
# sentinels still name as master waits for them to promote a replica (its own data is older than the
# replicas', which kept replicating until it died) and joins that replica; it takes mastership back
# only when no failover happens in time. So a restarted pod 0 never becomes a second master.
#
# Environment, set by the StatefulSet: POD_NAME (<statefulset>-<ordinal>), HEADLESS_DOMAIN, REPLICAS,
# MASTER_NAME, QUORUM, REDIS_MAXMEMORY, and one password per ACL user (the default user is off):
#   ADMIN_PASSWORD        admin: everything (this script, operators)
#   GATEWAY_PASSWORD      gateway: its commands on its keys (gw:*, kubernaut:*), read-only on the sentinels
#   REPLICATION_PASSWORD  replication: what a replica needs from its master
#   SENTINEL_PASSWORD     sentinel: what Sentinel needs from the nodes; the sentinels among themselves
#   EXPORTER_PASSWORD     exporter: read-only metrics commands
# Defaults that the tests override to run the group on loopback: NODE_HOSTS (one host per ordinal,
# instead of <pod>.<HEADLESS_DOMAIN>), REDIS_PORT, SENTINEL_PORT, BIND_ADDRESS, LOCAL_ADDRESS, DATA_DIR, RUN_DIR,
# TEMPLATE_DIR, FAILOVER_WAIT_S, PRESTOP_S.
set -eu

ORDINAL=${POD_NAME##*-}
STS_NAME=${POD_NAME%-*}
REDIS_PORT=${REDIS_PORT:-6379}
SENTINEL_PORT=${SENTINEL_PORT:-26379}
BIND_ADDRESS=${BIND_ADDRESS:-* -::*}
LOCAL_ADDRESS=${LOCAL_ADDRESS:-127.0.0.1}
DATA_DIR=${DATA_DIR:-/data}
RUN_DIR=${RUN_DIR:-/run/redis}
TEMPLATE_DIR=${TEMPLATE_DIR:-/etc/redis-gateway}
# down-after (5 s) + a failover (measured ~6 s) with room to spare.
FAILOVER_WAIT_S=${FAILOVER_WAIT_S:-30}

log() { echo "redis-gateway[$POD_NAME]: $*" >&2; }

node_host() {
    if [ -n "${NODE_HOSTS:-}" ]; then
        echo "$NODE_HOSTS" | cut -d' ' -f"$(($1 + 1))"
    else
        echo "$STS_NAME-$1.$HEADLESS_DOMAIN"
    fi
}

SELF=$(node_host "$ORDINAL")

local_redis() {
    REDISCLI_AUTH=$ADMIN_PASSWORD timeout 3 redis-cli --raw --user admin -h "$LOCAL_ADDRESS" -p "$REDIS_PORT" "$@"
}

local_sentinel() {
    REDISCLI_AUTH=$ADMIN_PASSWORD timeout 3 redis-cli --raw --user admin -h "$LOCAL_ADDRESS" -p "$SENTINEL_PORT" "$@"
}

# The ACL users' commands (tools/src/kubernaut_tools/localstack/redis_servers.py has the same lists; a test compares).
GATEWAY_COMMANDS="-@all +ping +select +client|setname +evalsha +script|load +get +set +sadd +wait \
+del +exists +getdel +getex +hdel +hget +hgetall +hincrby +hmget +hset +hsetnx +pexpire +rename +time \
+lpop +lrange +rpush +zadd +zcard +zrangebyscore +zrem +zremrangebyscore"
REPLICATION_COMMANDS="-@all +psync +replconf +ping"
# What Sentinel sends to a monitored node (Redis's Sentinel documentation).
SENTINEL_NODE_COMMANDS="-@all +multi +slaveof +replicaof +ping +exec +subscribe +config|rewrite +role +publish \
+info +client|setname +client|kill +script|kill"
EXPORTER_COMMANDS="-@all +ping +select +info +client|setname +client|list +config|get +slowlog|get +slowlog|len \
+latency|latest +memory|stats +scan +type +strlen +llen +scard +hlen +zcard +xlen +pfcount"
GATEWAY_SENTINEL_COMMANDS="-@all +ping +client|setname +subscribe +sentinel|get-master-addr-by-name \
+sentinel|master +sentinel|masters +sentinel|sentinels +sentinel|slaves +sentinel|replicas"
EXPORTER_SENTINEL_COMMANDS="-@all +ping +info +client|setname +sentinel|masters +sentinel|master \
+sentinel|sentinels +sentinel|slaves +sentinel|replicas +sentinel|ckquorum"

node_acl() {
    echo "user default off"
    echo "user admin on >$ADMIN_PASSWORD ~* &* +@all"
    echo "user gateway on >$GATEWAY_PASSWORD ~gw:* ~kubernaut:* resetchannels $GATEWAY_COMMANDS"
    echo "user replication on >$REPLICATION_PASSWORD resetchannels $REPLICATION_COMMANDS"
    echo "user sentinel on >$SENTINEL_PASSWORD resetchannels &__sentinel__:hello $SENTINEL_NODE_COMMANDS"
    echo "user exporter on >$EXPORTER_PASSWORD ~* resetchannels $EXPORTER_COMMANDS"
}

sentinel_acl() {
    echo "user default off"
    echo "user admin on >$ADMIN_PASSWORD ~* &* +@all"
    # Sentinel's peer protocol (hello messages, votes, failover) has no documented narrower set.
    echo "user sentinel on >$SENTINEL_PASSWORD ~* &* +@all"
    echo "user gateway on >$GATEWAY_PASSWORD resetchannels &+switch-master $GATEWAY_SENTINEL_COMMANDS"
    echo "user exporter on >$EXPORTER_PASSWORD resetchannels $EXPORTER_SENTINEL_COMMANDS"
}

# Print "host port" as named by the other pods' sentinels when they agree; print nothing when none
# knows a master. Sentinels that disagree (mid-failover) are asked again.
sentinels_master() {
    attempt=0
    while :; do
        answers=""
        i=0
        while [ "$i" -lt "$REPLICAS" ]; do
            if [ "$i" != "$ORDINAL" ]; then
                answer=$(REDISCLI_AUTH=$ADMIN_PASSWORD timeout 3 redis-cli --raw --user admin \
                    -h "$(node_host "$i")" -p "$SENTINEL_PORT" \
                    sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | tr '\n' ' ' || true)
                # shellcheck disable=SC2086 # split the reply into host and port
                set -- $answer
                if [ $# -eq 2 ]; then
                    answers="$answers$1 $2
"
                fi
            fi
            i=$((i + 1))
        done
        distinct=$(printf '%s' "$answers" | sort -u | grep -c . || true)
        if [ "$distinct" -eq 1 ]; then
            printf '%s' "$answers" | sort -u
            return 0
        fi
        attempt=$((attempt + 1))
        if [ "$distinct" -eq 0 ] && [ "$attempt" -ge 3 ]; then
            return 0
        fi
        if [ "$attempt" -ge 10 ]; then
            # Still split after 10 s: follow the majority.
            printf '%s' "$answers" | sort | uniq -c | sort -rn | head -n 1 | awk '{print $2, $3}'
            return 0
        fi
        sleep 1
    done
}

# The master this pod should follow, as "host port", or nothing when it is to be the master.
choose_master() {
    master=$(sentinels_master)
    if [ -z "$master" ]; then
        if [ "$ORDINAL" = 0 ]; then
            log "no sentinel knows a master: bootstrapping as master"
            return 0
        fi
        log "no sentinel knows a master: following pod 0"
        echo "$(node_host 0) $REDIS_PORT"
        return 0
    fi
    if [ "$master" = "$SELF $REDIS_PORT" ]; then
        log "the sentinels still name this pod as master: waiting up to ${FAILOVER_WAIT_S}s for a failover"
        waited=0
        while [ "$waited" -lt "$FAILOVER_WAIT_S" ]; do
            sleep 1
            waited=$((waited + 1))
            master=$(sentinels_master)
            if [ -n "$master" ] && [ "$master" != "$SELF $REDIS_PORT" ]; then
                log "the sentinels promoted $master"
                echo "$master"
                return 0
            fi
        done
        log "no failover happened: resuming as master"
        return 0
    fi
    echo "$master"
}

start_redis() {
    mkdir -p "$RUN_DIR"
    master=$(choose_master)
    conf=$RUN_DIR/redis.conf
    {
        echo "bind $BIND_ADDRESS"
        echo "port $REDIS_PORT"
        echo "dir $DATA_DIR"
        node_acl
        echo "masteruser replication"
        echo "masterauth \"$REPLICATION_PASSWORD\""
        echo "replica-announce-ip $SELF"
        echo "maxmemory $REDIS_MAXMEMORY"
        cat "$TEMPLATE_DIR/redis.conf"
        if [ -n "$master" ]; then
            echo "replicaof $master"
        fi
    } >"$conf"
    if [ -n "$master" ]; then log "starting redis as a replica of $master"; else log "starting redis as master"; fi
    exec redis-server "$conf"
}

start_sentinel() {
    mkdir -p "$RUN_DIR"
    master=$(sentinels_master)
    if [ -z "$master" ]; then
        master="$(node_host 0) $REDIS_PORT"
    fi
    conf=$RUN_DIR/sentinel.conf
    {
        echo "bind $BIND_ADDRESS"
        echo "port $SENTINEL_PORT"
        echo "dir $RUN_DIR"
        sentinel_acl
        echo "sentinel sentinel-user sentinel"
        echo "sentinel sentinel-pass \"$SENTINEL_PASSWORD\""
        echo "sentinel resolve-hostnames yes"
        echo "sentinel announce-hostnames yes"
        echo "sentinel announce-ip $SELF"
        echo "sentinel announce-port $SENTINEL_PORT"
        echo "sentinel monitor $MASTER_NAME $master $QUORUM"
        echo "sentinel auth-user $MASTER_NAME sentinel"
        echo "sentinel auth-pass $MASTER_NAME \"$SENTINEL_PASSWORD\""
        cat "$TEMPLATE_DIR/sentinel.conf"
    } >"$conf"
    log "starting sentinel monitoring $master"
    exec redis-sentinel "$conf"
}

# Ready when master, or when a replica whose link to the master is up (it holds the current data).
ready() {
    info=$(local_redis info replication | tr -d '\r')
    case "$info" in
    *role:master*) return 0 ;;
    *master_link_status:up*) return 0 ;;
    esac
    return 1
}

# A planned stop of the master (rolling update, node drain) asks the sentinels to promote a replica
# first, so the gateway sees a switch of a fraction of a second instead of a 5 s outage. Bounded by
# PRESTOP_S, inside the pod's termination grace period; a refused request (a failover already in
# progress, no replica in sync yet) is asked again.
prestop() {
    waited=0
    asked=""
    while [ "$waited" -lt "${PRESTOP_S:-30}" ]; do
        case "$(local_redis info replication | tr -d '\r')" in
        *role:master*) ;;
        *) return 0 ;;
        esac
        if [ -z "$asked" ]; then
            reply=$(local_sentinel sentinel failover "$MASTER_NAME" 2>&1 || true)
            if [ "$reply" = OK ]; then
                log "handing mastership to a replica before stopping"
                asked=yes
            fi
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "still master after ${PRESTOP_S:-30}s (last sentinel reply: ${reply:-none}): stopping anyway"
}

case "${1:-}" in
redis) start_redis ;;
sentinel) start_sentinel ;;
ready) ready ;;
prestop) prestop ;;
*)
    echo "usage: $0 redis|sentinel|ready|prestop" >&2
    exit 2
    ;;
esac
