#!/usr/bin/env bash
# End-to-end test of profiles/slurm on a real one-node SLURM cluster on this machine (no mocks):
#   1. installs Debian's SLURM packages if missing (munge, slurmctld, slurmd, slurm-client, and slurmdbd with
#      MariaDB, because snakemake-executor-plugin-slurm polls job states with sacct, which needs slurmdbd);
#   2. starts munged, MariaDB, slurmdbd, slurmctld and slurmd as root with private sockets, ports and state
#      under $STATE and waits until sinfo shows the node idle. The configs live in $STATE/etc (SLURM_CONF);
#      /etc/slurm/slurm.conf is a symlink to them while the test runs, because the plugin's job step drops
#      SLURM_CONF before it calls srun inside the job. The test refuses to run where /etc/slurm/slurm.conf
#      already exists (a machine with its own SLURM) and touches no system daemon;
#   3. runs the workflow on tests/conftest.py's TINY_CONFIG through profiles/slurm in a temporary copy. The
#      node has no GPU and only this machine's CPUs and memory, so the test runs a copy of the profile with
#      gres dropped and threads / mem_mb capped to the node (tests/slurm/harness.py derive-profile prints
#      every override); partitions, runtimes and all other settings are used as written, and the test's
#      slurm.conf defines the partitions the profile names;
#   4. checks with sacct that every job Snakemake submitted ran through SLURM and COMPLETED, in the
#      partition the profile gives its rule;
#   5. runs the same config locally in a second copy, with the same threads per rule as the SLURM jobs, and
#      checks that every constants.json is identical;
#   6. stops the daemons and removes $STATE on exit, also on failure or Ctrl-C (KEEP_STATE=1 keeps it).
#
# Usage (as root; idempotent, a second run starts from scratch):  tests/slurm/run.sh
# Environment: PYTHON (default .venv/bin/python; needs snakemake-executor-plugin-slurm), STATE (default
# /tmp/resdyn-slurm-test), PORT_BASE (default 16800: slurmctld +17, slurmd +18, slurmdbd +19, MariaDB +6),
# SNAKEMAKE_TIMEOUT (seconds per workflow run, default 1800), KEEP_STATE=1. A job SLURM can never start
# (pending for a reason such as PartitionConfig: it asks for more than the node has) fails the test at once.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
STATE="${STATE:-/tmp/resdyn-slurm-test}"
PORT_BASE="${PORT_BASE:-16800}"
SNAKEMAKE_TIMEOUT="${SNAKEMAKE_TIMEOUT:-1800}"
PACKAGES=(munge slurm-client slurmctld slurmd slurmdbd mariadb-server)
# Daemons in start order; cleanup stops them in reverse. Each runs in the foreground mode (-D/-F) as a
# background job of this script in a session of its own (setsid): its pid is known exactly, and a Ctrl-C or
# a `timeout` aimed at this script's process group does not kill the cluster before cleanup has cancelled
# the jobs on it.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)
T0=$SECONDS
SNAKEMAKE_PID=""

log() { printf '[slurm-test %4ds] %s\n' "$((SECONDS - T0))" "$*"; }
die() { log "FAILED: $*"; exit 1; }

# Cancel the cluster's jobs, then stop the daemons this script started (at the start of a run: those a killed
# earlier run left behind). Only processes whose pid is in $STATE/pids and whose command is still the daemon
# recorded there are signalled.
stop_daemons() {
    local name pid
    [[ -d "$STATE/pids" ]] || return 0
    if [[ -f "$STATE/pids/slurmctld" ]] && kill -0 "$(cat "$STATE/pids/slurmctld")" 2>/dev/null; then
        SLURM_CONF="$STATE/etc/slurm.conf" scancel --user=root 2>/dev/null || true
        for _ in $(seq 60); do
            [[ -z "$(SLURM_CONF="$STATE/etc/slurm.conf" squeue -h -o %i 2>/dev/null)" ]] && break
            sleep 1
        done
    fi
    for ((k = ${#DAEMONS[@]} - 1; k >= 0; k--)); do
        name="${DAEMONS[k]}"
        [[ -f "$STATE/pids/$name" ]] || continue
        pid="$(cat "$STATE/pids/$name")"
        if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]]; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$STATE/pids/$name"
    done
}

# Interrupt a running Snakemake: on SIGINT it cancels its SLURM jobs (scancel) and exits (on SIGTERM it
# would wait for them to finish). It runs under `timeout`, which leads a process group of its own.
stop_snakemake() {
    [[ -n "$SNAKEMAKE_PID" ]] || return 0
    kill -INT -- "-$SNAKEMAKE_PID" 2>/dev/null || true
    for _ in $(seq 120); do
        kill -0 "$SNAKEMAKE_PID" 2>/dev/null || break
        sleep 0.5
    done
    kill -KILL -- "-$SNAKEMAKE_PID" 2>/dev/null || true
    wait "$SNAKEMAKE_PID" 2>/dev/null || true
    SNAKEMAKE_PID=""
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_snakemake
    if ((status != 0)) && [[ -d "$STATE/log" ]]; then
        for f in "$STATE"/log/*.log; do
            [[ -s "$f" ]] && { echo "---- tail of $f"; tail -n 15 "$f"; }
        done
    fi
    stop_daemons
    remove_etc_link
    if [[ "${KEEP_STATE:-0}" == 1 ]]; then
        log "kept $STATE"
    else
        rm -rf "$STATE"
    fi
    log "cleaned up; exit status $status, total ${SECONDS}s"
    exit "$status"
}

ETC_CONF=/etc/slurm/slurm.conf
# Remove /etc/slurm/slurm.conf only when it is this test's symlink into $STATE.
remove_etc_link() {
    if [[ -L "$ETC_CONF" && "$(readlink "$ETC_CONF")" == "$STATE/etc/slurm.conf" ]]; then
        rm -f "$ETC_CONF"
    fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.5 s
    local limit=$1 what=$2
    shift 2
    for _ in $(seq $((limit * 2))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "$what not ready after ${limit}s"
}

start_daemon() {  # start_daemon NAME COMMAND...: run in the foreground mode as a background job
    local name=$1
    shift
    # No job control in a script, so the background job is no group leader and setsid needs no fork: $!
    # is the daemon's own pid.
    setsid "$@" >"$STATE/log/$name.out" 2>&1 </dev/null &
    echo $! >"$STATE/pids/$name"
}

# ---------------------------------------------------------------------------------------------- checks
[[ "$(id -u)" == 0 ]] || die "run as root (it installs packages and starts the SLURM daemons)"
[[ -x "$PYTHON" ]] || die "no Python at $PYTHON (set PYTHON, or run 'make install')"
"$PYTHON" -c "import snakemake_executor_plugin_slurm" 2>/dev/null ||
    die "$PYTHON lacks snakemake-executor-plugin-slurm (pip install 'snakemake-executor-plugin-slurm>=2,<3')"

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
log "packages present: ${PACKAGES[*]} ($(dpkg-query -W -f='${Version}' slurmctld))"

stop_daemons
remove_etc_link
[[ -e "$ETC_CONF" || -L "$ETC_CONF" ]] && die "$ETC_CONF exists: this machine has its own SLURM configuration"
rm -rf "$STATE"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# munged insists that every directory above its socket is searchable by all and writable by nobody else.
mkdir -p -m 755 "$STATE"
mkdir -p -m 755 "$STATE"/{munge,etc,log,pids,ctld,spool,db,work}

CTLD_PORT=$((PORT_BASE + 17)) SLURMD_PORT=$((PORT_BASE + 18)) DBD_PORT=$((PORT_BASE + 19)) DB_PORT=$((PORT_BASE + 6))
for port in $CTLD_PORT $SLURMD_PORT $DBD_PORT $DB_PORT; do
    port_free "$port" || die "port $port is in use (set PORT_BASE)"
done

# ----------------------------------------------------------------------------------------- the cluster
HOST="$(hostname -s)"
NODE_LINE="$(slurmd -C | head -n 1)"                      # NodeName=<host> CPUs=… RealMemory=…
CPUS="$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$NODE_LINE")"
REAL_MEMORY="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$NODE_LINE")"
[[ -n "$CPUS" && -n "$REAL_MEMORY" ]] || die "cannot read CPUs/RealMemory from 'slurmd -C': $NODE_LINE"
MUNGE_SOCKET="$STATE/munge/munge.socket"
export SLURM_CONF="$STATE/etc/slurm.conf"

# The test's profile first: slurm.conf needs the partition names it uses.
PROFILE="$STATE/profile"
log "test profile $PROFILE from profiles/slurm/config.yaml:"
"$PYTHON" "$REPO/tests/slurm/harness.py" derive-profile "$REPO/profiles/slurm/config.yaml" "$PROFILE" \
    --cpus "$CPUS" --mem-mb $((REAL_MEMORY / CPUS))
mapfile -t PARTITIONS < <("$PYTHON" "$REPO/tests/slurm/harness.py" partitions "$PROFILE/config.yaml")

dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$STATE/munge/munge.key"

cat >"$STATE/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=root
StorageLoc=slurm_acct_db
EOF
chmod 600 "$STATE/etc/slurmdbd.conf"   # slurmdbd refuses a readable config (it may hold a password)

{
    cat <<EOF
ClusterName=resdyntest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# No cgroups in a container: track processes through /proc, no CPU binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
# Job accounting in slurmdbd, as on a production cluster: the executor plugin polls job states with sacct.
# AccountingStoragePass names the munge socket used to talk to slurmdbd; job_comment keeps the plugin's
# rule_<name> comments in sacct.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET
AccountingStoreFlags=job_comment
$NODE_LINE NodeAddr=127.0.0.1 State=UNKNOWN
EOF
    default=YES
    for partition in "${PARTITIONS[@]}"; do
        echo "PartitionName=$partition Nodes=ALL Default=$default MaxTime=INFINITE State=UP"
        default=NO
    done
} >"$SLURM_CONF"
mkdir -p "$(dirname "$ETC_CONF")"
ln -s "$SLURM_CONF" "$ETC_CONF"
log "slurm.conf: node $HOST with $CPUS CPUs, ${REAL_MEMORY} MB; partitions ${PARTITIONS[*]}"

start_daemon munged munged -F --key-file="$STATE/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/seed"
wait_for 20 munged munge -S "$MUNGE_SOCKET" -n

mariadb-install-db --no-defaults --datadir="$STATE/db/data" --user=root --skip-test-db \
    --auth-root-authentication-method=normal >"$STATE/log/mariadb-install.log" 2>&1
start_daemon mariadbd mariadbd --no-defaults --datadir="$STATE/db/data" --socket="$STATE/db/mysqld.sock" \
    --port="$DB_PORT" --bind-address=127.0.0.1 --user=root --pid-file="$STATE/db/mariadbd.pid" \
    --log-error="$STATE/log/mariadbd.log" --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900
wait_for 60 MariaDB mariadb-admin --no-defaults --socket="$STATE/db/mysqld.sock" -uroot ping

start_daemon slurmdbd slurmdbd -D
wait_for 60 slurmdbd sacctmgr -n list cluster
start_daemon slurmctld slurmctld -D -i
wait_for 60 slurmctld scontrol ping
start_daemon slurmd slurmd -D
node_idle() { [[ "$(sinfo -h -N -o %T | sort -u)" == idle ]]; }
wait_for 60 "node $HOST idle" node_idle
log "cluster up: $(sinfo -h -o '%P %a %D %T %N' | tr '\n' ';')"
T_CLUSTER=$SECONDS

# ------------------------------------------------------------------------------------------ SLURM run
# Both runs get the same environment (sbatch --export=ALL passes it to the jobs) and the same threads per
# rule (Snakemake exports OMP_NUM_THREADS = threads to each job; see harness.py profile_threads).
read -r -a THREADS <<<"$("$PYTHON" "$REPO/tests/slurm/harness.py" threads "$PROFILE/config.yaml")"
SLURM_RUN="$STATE/work/slurm" LOCAL_RUN="$STATE/work/local"
"$PYTHON" "$REPO/tests/slurm/harness.py" copy-workflow "$SLURM_RUN"
"$PYTHON" "$REPO/tests/slurm/harness.py" copy-workflow "$LOCAL_RUN"

run_snakemake() {  # run_snakemake DIR LOGFILE ARGS...: in the background, so that a signal reaches cleanup
    local dir=$1 logfile=$2
    shift 2
    # -k: Snakemake waits for its running jobs on SIGTERM; a KILL follows a minute later.
    (cd "$dir" && PYTHONPATH="$dir" exec timeout -k 60 "$SNAKEMAKE_TIMEOUT" "$PYTHON" -m snakemake "$@") \
        >"$logfile" 2>&1 &
    SNAKEMAKE_PID=$!
    local status=0 stuck
    # A job whose request the node can never meet (too many CPUs, a missing partition) stays pending with
    # one of these reasons for ever; fail at once, naming its rule (the plugin's comment), not at the timeout.
    while kill -0 "$SNAKEMAKE_PID" 2>/dev/null; do
        stuck="$(squeue -h -t PD -o '%i %r %k' 2>/dev/null |
            grep -E ' (PartitionConfig|PartitionNodeLimit|PartitionTimeLimit|BadConstraints|ReqNodeNotAvail)' ||
            true)"
        [[ -z "$stuck" ]] || die "SLURM jobs that can never start (job, reason, rule): ${stuck//$'\n'/; }"
        sleep 5
    done
    wait "$SNAKEMAKE_PID" || status=$?   # a trapped signal ends the wait and exits through cleanup
    SNAKEMAKE_PID=""
    if ((status != 0)); then
        tail -n 60 "$logfile"
        die "snakemake $* in $dir failed with status $status (log above: $logfile)"
    fi
}

log "SLURM run: snakemake --workflow-profile <test copy of profiles/slurm> in $SLURM_RUN"
run_snakemake "$SLURM_RUN" "$STATE/work/slurm.log" --workflow-profile "$PROFILE"
T_SLURM=$((SECONDS - T_CLUSTER))
log "SLURM run finished in ${T_SLURM}s; slurm logs kept in $SLURM_RUN/.snakemake/slurm_logs"
"$PYTHON" "$REPO/tests/slurm/harness.py" check-slurm --log "$STATE/work/slurm.log" --profile "$PROFILE/config.yaml"
compgen -G "$SLURM_RUN/.snakemake/slurm_logs/rule_train/*/*.log" >/dev/null ||
    die "no SLURM log of rule train under $SLURM_RUN/.snakemake/slurm_logs"

# ------------------------------------------------------------------------------------------ local run
T_LOCAL0=$SECONDS
log "local run: snakemake --cores $CPUS --set-threads ${THREADS[*]} (profiles/default) in $LOCAL_RUN"
run_snakemake "$LOCAL_RUN" "$STATE/work/local.log" --cores "$CPUS" --set-threads "${THREADS[@]}" \
    -- results/digits/tiny_a/constants.json results/digits/tiny_b/constants.json
log "local run finished in $((SECONDS - T_LOCAL0))s"
"$PYTHON" "$REPO/tests/slurm/harness.py" compare-constants "$SLURM_RUN" "$LOCAL_RUN"

log "PASSED: cluster start $((T_CLUSTER - T0))s, SLURM run ${T_SLURM}s, local run $((SECONDS - T_LOCAL0))s"
