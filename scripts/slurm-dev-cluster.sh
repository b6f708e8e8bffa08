#!/usr/bin/env bash
# A real single-node SLURM cluster for development and CI, from Debian's
# packages (munge, slurmctld, slurmd, slurm-client).
#
#   scripts/slurm-dev-cluster.sh start    install if needed, configure, start, wait until idle
#   scripts/slurm-dev-cluster.sh stop     cancel all jobs, let them drain, stop the daemons by PID
#   scripts/slurm-dev-cluster.sh status   what runs, and the node's state
#
# Needs root (it installs packages and writes /etc/slurm/slurm.conf) and no
# systemd or cgroups. Everything the cluster writes (state, spool, logs, pid
# files, the job completion log) lives in $DSNN_SLURM_DIR
# (default /var/tmp/dsnn-slurm). The node advertises $DSNN_SLURM_CPUS CPUs
# (default: 4 per core, at least 8) so that several trials run at once even on
# a small machine. Both commands are idempotent; any failure exits non-zero
# with the reason and the end of the relevant log.
set -euo pipefail

STATE_DIR="${DSNN_SLURM_DIR:-/var/tmp/dsnn-slurm}"
CONF=/etc/slurm/slurm.conf
MARKER="# Written by dsnn scripts/slurm-dev-cluster.sh; safe to overwrite."
NODE="$(hostname -s)"
MUNGE_PID="$STATE_DIR/munge/munged.pid"
CTLD_PID="$STATE_DIR/slurmctld.pid"
SLURMD_PID="$STATE_DIR/slurmd.pid"
PACKAGES=(munge slurmctld slurmd slurm-client)

say() { echo "slurm-dev-cluster: $*"; }
die() {
  echo "slurm-dev-cluster: error: $*" >&2
  exit 1
}
show_log() {
  if [ -f "$1" ]; then
    echo "--- last lines of $1:" >&2
    tail -n 20 "$1" >&2
  fi
}

# The PID in a pid file if that process is alive, else nothing.
live_pid() {
  local pid
  [ -f "$1" ] || return 1
  pid="$(cat "$1" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

need_root() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (installs packages, writes $CONF, runs the daemons)"
}

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "packages ${missing[*]} are missing and apt-get is not available"
  say "installing ${missing[*]}"
  # Installing would try to start the services; a policy-rc.d that exits 101
  # forbids that. Restore whatever policy was there before.
  local policy=/usr/sbin/policy-rc.d backup=""
  if [ -e "$policy" ]; then
    backup="$(mktemp)"
    cp -p "$policy" "$backup"
  fi
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  local rc=0
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  } >"$STATE_DIR/apt.log" 2>&1 || rc=$?
  if [ -n "$backup" ]; then
    mv "$backup" "$policy"
  else
    rm -f "$policy"
  fi
  if [ "$rc" -ne 0 ]; then
    show_log "$STATE_DIR/apt.log"
    die "apt-get install ${missing[*]} failed (exit $rc)"
  fi
}

write_config() {
  if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
    die "$CONF exists and was not written by this script; refusing to overwrite a real cluster's configuration"
  fi
  local cores mem cpus
  cores="$(nproc)"
  cpus="${DSNN_SLURM_CPUS:-$((cores * 4 > 8 ? cores * 4 : 8))}"
  [[ "$cpus" =~ ^[1-9][0-9]*$ ]] || die "DSNN_SLURM_CPUS must be a positive integer, got '$cpus'"
  # RealMemory in MiB: about 85% of the machine's memory.
  mem="$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.85 }' /proc/meminfo)"
  mkdir -p /etc/slurm
  cat >"$CONF.tmp" <<EOF
$MARKER
ClusterName=dsnn-dev
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MailProg=/bin/true
ReturnToService=2
KillWait=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1024
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
EnforcePartLimits=ALL
SlurmdParameters=config_overrides
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE_DIR/jobcomp.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldLogFile=$STATE_DIR/slurmctld.log
SlurmdLogFile=$STATE_DIR/slurmd.log
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
  echo "$cpus"
}

start_munge() {
  if live_pid "$MUNGE_PID" >/dev/null; then
    say "munged already running (pid $(live_pid "$MUNGE_PID"))"
    return 0
  fi
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "a munged not started by this script already answers; using it"
    return 0
  fi
  if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge /etc/munge/munge.key
  chmod 700 /etc/munge
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge "$STATE_DIR/munge"
  chown munge:munge /run/munge /var/lib/munge /var/log/munge "$STATE_DIR/munge"
  chmod 755 /run/munge
  runuser -u munge -- munged --pid-file="$MUNGE_PID" --log-file="$STATE_DIR/munge/munged.log" ||
    {
      show_log "$STATE_DIR/munge/munged.log"
      die "munged failed to start"
    }
  for _ in $(seq 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  show_log "$STATE_DIR/munge/munged.log"
  die "munged started but does not answer (munge -n | unmunge fails)"
}

node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n 1; }

cmd_start() {
  need_root
  mkdir -p "$STATE_DIR"/{state,spool}
  install_packages
  local cpus
  cpus="$(write_config)"
  start_munge
  if live_pid "$CTLD_PID" >/dev/null; then
    say "slurmctld already running (pid $(live_pid "$CTLD_PID"))"
  else
    # -c: start from a clean state (no jobs from an earlier session); -i:
    # ignore unreadable state files.
    slurmctld -c -i || {
      show_log "$STATE_DIR/slurmctld.log"
      die "slurmctld failed to start"
    }
  fi
  if live_pid "$SLURMD_PID" >/dev/null; then
    say "slurmd already running (pid $(live_pid "$SLURMD_PID"))"
  else
    slurmd || {
      show_log "$STATE_DIR/slurmd.log"
      die "slurmd failed to start"
    }
  fi
  local state=""
  for _ in $(seq 150); do
    state="$(node_state)"
    case "$state" in
      idle | mix | alloc) break ;;
    esac
    sleep 0.2
  done
  case "$state" in
    idle | mix | alloc) ;;
    *)
      show_log "$STATE_DIR/slurmctld.log"
      show_log "$STATE_DIR/slurmd.log"
      die "node $NODE is not usable after 30 s (sinfo state: '${state:-no answer}')"
      ;;
  esac
  say "up: node $NODE ($cpus CPUs advertised) is $state; partition debug; state in $STATE_DIR"
}

# Signal a daemon by the PID in its pid file and wait until it is gone.
stop_daemon() {
  local name="$1" pidfile="$2" pid
  if ! pid="$(live_pid "$pidfile")"; then
    rm -f "$pidfile"
    say "$name not running"
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || {
      rm -f "$pidfile"
      say "stopped $name (pid $pid)"
      return 0
    }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  sleep 0.2
  kill -0 "$pid" 2>/dev/null && die "$name (pid $pid) survived SIGKILL"
  rm -f "$pidfile"
  say "killed $name (pid $pid) after 10 s"
}

cmd_stop() {
  need_root
  if live_pid "$CTLD_PID" >/dev/null && live_pid "$SLURMD_PID" >/dev/null; then
    # Jobs' step processes outlive slurmd: cancel every job and let them
    # drain first.
    local jobs
    jobs="$(squeue -h -o %i 2>/dev/null || true)"
    if [ -n "$jobs" ]; then
      say "cancelling $(echo "$jobs" | wc -l) job(s)"
      # shellcheck disable=SC2086
      scancel $jobs || true
      for _ in $(seq 150); do
        [ -z "$(squeue -h -o %i 2>/dev/null || true)" ] && break
        sleep 0.2
      done
      [ -n "$(squeue -h -o %i 2>/dev/null || true)" ] &&
        say "warning: jobs still listed after 30 s: $(squeue -h -o '%i %T' | tr '\n' ' ')"
    fi
  fi
  stop_daemon slurmd "$SLURMD_PID"
  stop_daemon slurmctld "$CTLD_PID"
  stop_daemon munged "$MUNGE_PID"
}

cmd_status() {
  local rc=0 pid
  for d in "munged:$MUNGE_PID" "slurmctld:$CTLD_PID" "slurmd:$SLURMD_PID"; do
    if pid="$(live_pid "${d#*:}")"; then
      say "${d%%:*} running (pid $pid)"
    else
      say "${d%%:*} not running"
      rc=1
    fi
  done
  if [ "$rc" -eq 0 ]; then
    say "node $NODE: $(node_state || echo 'no answer')"
    squeue -h -o '%i %T %j' 2>/dev/null | sed 's/^/slurm-dev-cluster: job /' || true
  fi
  return "$rc"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
