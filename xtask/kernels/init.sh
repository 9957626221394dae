#!/bin/busybox sh
# PID 1 of the kernel matrix's initramfs: mount what the agent reads, load
# the virtio modules listed in /modules/order, run the matrix on /dev/vda,
# write the results as a tar to /dev/vdb and power off.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mount -t tmpfs tmpfs /tmp
ip link set lo up
for m in $(cat /modules/order 2>/dev/null); do insmod "/modules/$m"; done
i=0
until [ -b /dev/vda ] && [ -b /dev/vdb ]; do
  i=$((i + 1))
  if [ $i -gt 100 ]; then echo "matrix: no virtio disks"; break; fi
  sleep 0.1
done
echo "matrix: kernel $(uname -r), $(nproc) CPUs"
mkdir -p /tmp/out
/matrix/run.sh /tmp/out /dev/vda /matrix
cd /tmp && tar -cf /dev/vdb out
sync
echo "matrix: done"
poweroff -f
