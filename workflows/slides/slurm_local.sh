#!/usr/bin/env bash
# A single-node Slurm cluster on 127.0.0.1 for trying the cohort workflow's Slurm profile (and for
# its test): munged, slurmctld and slurmd started directly as root (no systemd), everything —
# slurm.conf, a freshly generated munge key, sockets, logs, state — in one directory.
#
#   bash workflows/slides/slurm_local.sh start   # configure, start, wait until `sinfo` shows the node idle
#   bash workflows/slides/slurm_local.sh stop    # stop the daemons (by their pid files), keep the logs
#   bash workflows/slides/slurm_local.sh status  # sinfo + squeue
#   bash workflows/slides/slurm_local.sh env     # the `export SLURM_CONF=...` line (also printed by start)
#
# /etc/slurm/slurm.conf is linked to the configuration while the cluster runs (commands inside
# jobs — the srun of Snakemake's job step — read that path), unless the machine has a slurm.conf
# of its own. Directory: $BIOEDGE_SLURM_DIR (default /tmp/bioedge-slurm); ports 6817/6818 unless
# BIOEDGE_SLURM_PORT (slurmctld; slurmd takes the next one). Debian packages: slurm-wlm, munge
# (scripts/setup.sh installs them).
#
# Job accounting (BIOEDGE_SLURM_ACCOUNTING): `none` (default): AccountingStorageType=
# accounting_storage/none, and Slurm 22.05's `sacct` answers "Slurm accounting storage is
# disabled"; MinJobAge is raised to 1 hour so that `squeue -t all` (the Snakemake executor's status
# query, `slurm-status-command: squeue` in the profile) lists finished jobs for that long, and job
# completions are appended to $DIR/jobcomp.log (jobcomp/filetxt), one line per job with its exit
# code. `slurmdbd`: a private MariaDB server and slurmdbd as well, so that `sacct` lists the jobs
# (apt-get install slurmdbd mariadb-server; start takes ~10 s instead of ~1 s).
set -euo pipefail

DIR="${BIOEDGE_SLURM_DIR:-/tmp/bioedge-slurm}"
PORT="${BIOEDGE_SLURM_PORT:-6817}"
# none: no slurmdbd (sacct answers "accounting storage is disabled"; squeue keeps finished jobs
# for MinJobAge); slurmdbd: MariaDB (a private server on 127.0.0.1, port $PORT+3, data in
# $DIR/mysql) and slurmdbd (port $PORT+2), so that sacct works (apt-get install slurmdbd mariadb-server)
ACCOUNTING="${BIOEDGE_SLURM_ACCOUNTING:-none}"
export SLURM_CONF="$DIR/slurm.conf"

die() { echo "slurm_local: $*" >&2; exit 1; }

stop_pid() { # name pidfile
  local f="$2" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then echo "slurm_local: $1 ($pid) did not stop, killing it" >&2; kill -9 "$pid" || true; fi
  fi
  rm -f "$f"
}

stop() {
  stop_pid slurmd "$DIR/slurmd.pid"
  stop_pid slurmctld "$DIR/slurmctld.pid"
  stop_pid slurmdbd "$DIR/slurmdbd.pid"
  stop_pid mariadbd "$DIR/mysql.pid"
  stop_pid munged "$DIR/munged.pid"
  if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$SLURM_CONF" ]; then rm -f /etc/slurm/slurm.conf; fi
  echo "slurm_local: stopped (logs in $DIR)"
}

start() {
  [ "$(id -u)" = 0 ] || die "run as root (slurmd starts jobs as their users)"
  for b in munged mungekey slurmctld slurmd sinfo sbatch; do command -v "$b" >/dev/null || die "$b not found: apt-get install slurm-wlm munge (scripts/setup.sh)"; done
  if [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
    echo "slurm_local: already running (SLURM_CONF=$SLURM_CONF)"; return 0
  fi
  stop >/dev/null 2>&1 || true
  mkdir -p "$DIR"/{state,spool,munge}
  rm -f "$DIR/cgroup.conf"
  chmod 700 "$DIR/munge"
  local cpus mem
  cpus=$(nproc)
  # RealMemory: 90 % of the machine's memory (a node reporting less than RealMemory is drained)
  mem=$(free -m | awk '/^Mem:/ { printf "%d", $2 * 0.9 }')

  # munge: a fresh key, its socket in $DIR (slurm finds it through AuthInfo)
  [ -f "$DIR/munge/munge.key" ] || mungekey --create --keyfile="$DIR/munge/munge.key" --bits=1024
  chmod 400 "$DIR/munge/munge.key"
  munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
    --pid-file="$DIR/munged.pid" --log-file="$DIR/munged.log" --seed-file="$DIR/munge/munge.seed"

  cat > "$SLURM_CONF" <<EOF
# written by workflows/slides/slurm_local.sh
ClusterName=bioedge
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups (no systemd here): processes tracked by parent pid, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# jobs that do not ask for memory get 1 GB per CPU (not the whole node)
DefMemPerCPU=1000
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
# finished jobs stay in slurmctld (and so in sacct/squeue without slurmdbd) for an hour
MinJobAge=3600
$(accounting_conf)
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

  if [ "$ACCOUNTING" = slurmdbd ]; then start_slurmdbd; fi
  # Commands inside jobs (srun of the Snakemake job step) do not see our SLURM_CONF and fall
  # back to /etc/slurm/slurm.conf: link it there unless the machine has a configuration of its own.
  if [ ! -e /etc/slurm/slurm.conf ] || [ -L /etc/slurm/slurm.conf ]; then
    mkdir -p /etc/slurm && ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf
  else
    echo "slurm_local: /etc/slurm/slurm.conf is the machine's own: srun inside jobs may not find this cluster" >&2
  fi
  # -c: start clean (no jobs or node state from an earlier run in this directory)
  slurmctld -c
  slurmd -c
  local t
  for t in $(seq 1 60); do
    if sinfo -h -N -o '%N %t' 2>/dev/null | grep -q '^localhost idle'; then
      echo "slurm_local: node localhost idle ($cpus CPUs, ${mem} MB) after ${t}x0.5 s"
      echo "export SLURM_CONF=$SLURM_CONF"
      return 0
    fi
    sleep 0.5
  done
  sinfo -N -l >&2 || true
  tail -n 20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
  die "the node did not become idle within 30 s (logs above, in $DIR)"
}

accounting_conf() {
  if [ "$ACCOUNTING" = slurmdbd ]; then
    # AccountingStoragePass: with munge, the munged socket for talking to slurmdbd
    printf 'AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\nAccountingStoragePort=%s\nAccountingStoragePass=%s\n' \
      $((PORT + 2)) "$DIR/munge/munge.socket"
  else
    echo "AccountingStorageType=accounting_storage/none"
  fi
}

# MariaDB and slurmdbd, for sacct: a private database server in $DIR/mysql
start_slurmdbd() {
  for b in mariadbd mariadb-install-db mariadb slurmdbd sacctmgr; do command -v "$b" >/dev/null || die "$b not found: apt-get install slurmdbd mariadb-server"; done
  [ -d "$DIR/mysql/mysql" ] || mariadb-install-db --user=root --datadir="$DIR/mysql" --auth-root-authentication-method=normal --skip-test-db >"$DIR/mysql-install.log" 2>&1 \
    || { cat "$DIR/mysql-install.log" >&2; die "mariadb-install-db failed"; }
  setsid nohup mariadbd --no-defaults --user=root --datadir="$DIR/mysql" --socket="$DIR/mysql.sock" --port=$((PORT + 3)) \
    --bind-address=127.0.0.1 --skip-name-resolve --innodb-buffer-pool-size=32M --pid-file="$DIR/mysql.pid" --log-error="$DIR/mysql.err" \
    </dev/null >/dev/null 2>&1 &
  local t
  for t in $(seq 1 100); do [ -S "$DIR/mysql.sock" ] && break; sleep 0.2; done
  [ -S "$DIR/mysql.sock" ] || { tail -n 20 "$DIR/mysql.err" >&2; die "MariaDB did not start"; }
  mariadb --no-defaults -S "$DIR/mysql.sock" -u root -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'%' IDENTIFIED BY 'bioedge-local'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'%';"
  {
    echo "AuthType=auth/munge"
    echo "AuthInfo=socket=$DIR/munge/munge.socket"
    echo "DbdHost=localhost"
    echo "DbdPort=$((PORT + 2))"
    echo "SlurmUser=root"
    echo "PidFile=$DIR/slurmdbd.pid"
    echo "LogFile=$DIR/slurmdbd.log"
    echo "StorageType=accounting_storage/mysql"
    echo "StorageHost=127.0.0.1"
    echo "StoragePort=$((PORT + 3))"
    echo "StorageUser=slurm"
    echo "StoragePass=bioedge-local"
    echo "StorageLoc=slurm_acct_db"
  } > "$DIR/slurmdbd.conf"
  chmod 600 "$DIR/slurmdbd.conf"
  slurmdbd # reads slurmdbd.conf beside $SLURM_CONF
  for t in $(seq 1 20); do timeout 5 sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
  sacctmgr -n list cluster >/dev/null 2>&1 || { tail -n 20 "$DIR/slurmdbd.log" >&2; die "slurmdbd did not answer"; }
  sacctmgr -i add cluster bioedge >/dev/null 2>&1 || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo -N -l; squeue ;;
  env) echo "export SLURM_CONF=$SLURM_CONF" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
