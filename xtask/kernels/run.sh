#!/bin/sh
# One kernel's matrix run: for each hook mode, start the agent, read the
# kernel's own counters and the agent's, drive the workloads, read both
# again. Usage: run.sh OUT_DIR BLOCK_DEVICE DIR (DIR holds sonde, workload
# and agent-<mode>.toml). The checker (cargo xtask kernels) compares.
set -u
out=$1 disk=$2 dir=$3
url=http://127.0.0.1:4391
uname -r > "$out/release"
nproc > "$out/cpus"
basename "$disk" > "$out/disk"
snap() {
  # The kernel's files first, then the scrape: the scrape's own loopback
  # segments before the agent's refresh are the same at both ends.
  for f in diskstats net/snmp softirqs net/dev; do
    cat "/proc/$f" > "$d/$1.$(basename $f)"
  done
  wget -q -O "$d/$1.prom" "$url/metrics"
}
for mode in auto raw_tp; do
  d=$out/$mode
  mkdir -p "$d"
  "$dir/sonde" "$dir/agent-$mode.toml" > "$d/agent.log" 2>&1 &
  pid=$!
  i=0
  until wget -q -O "$d/samplers.json" "$url/samplers" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 1200 ] || ! kill -0 $pid 2>/dev/null; then
      echo "agent did not start" > "$d/error"
      # Not left running: the next mode needs the port.
      kill $pid 2>/dev/null
      wait $pid
      break
    fi
    sleep 0.1
  done
  [ -e "$d/error" ] && continue
  # The cgroup sampler's second pass (1 s) gives the programs their
  # per-cgroup slots.
  sleep 2
  snap before
  {
    "$dir/workload" syscalls 100000
    "$dir/workload" pingpong 2000
    "$dir/workload" direct "$disk" 500
    "$dir/workload" connects 200
  } > "$d/workload" 2>&1
  # The cgroup sampler stores its values once per interval (1 s here).
  sleep 2
  snap after
  kill $pid
  wait $pid
  echo $? > "$d/exit"
done
