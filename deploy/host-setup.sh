#!/usr/bin/env bash
# Prepares a host for espritd's kernel-bypass ports. Run as root, once per
# boot (or from a oneshot unit before espritd.service). Prints what it does;
# --dry-run prints without doing.
#
#   host-setup.sh [--dry-run] [--hugepages N] [--bind PCI ...] [--workers CPULIST]
#
#   --hugepages N    reserve N 2 MiB hugepages on every NUMA node and mount
#                    hugetlbfs on /dev/hugepages (DPDK ports)
#   --bind PCI       unbind the NIC at PCI (e.g. 0000:03:00.0) from its kernel
#                    driver and bind it to vfio-pci with dpdk-devbind.py, owned
#                    by the esprit user (DPDK ports; repeatable)
#   --workers LIST   the cores espritd's workers use (e.g. 2-5): moves every
#                    IRQ it can off them and prints the kernel command line
#                    that isolates them (isolcpus needs a reboot)
#
# AF_PACKET and AF_XDP ports need none of this except --workers; the
# default UDP/TUN ports need nothing.
set -euo pipefail

DRY=0
HUGEPAGES=0
BIND=()
WORKERS=""
USER_NAME=esprit

run() {
  echo "+ $*"
  if [ "$DRY" -eq 0 ]; then "$@"; fi
}

die() { echo "host-setup: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --hugepages) HUGEPAGES="${2:?--hugepages needs a count}"; shift ;;
    --bind) BIND+=("${2:?--bind needs a PCI address}"); shift ;;
    --workers) WORKERS="${2:?--workers needs a CPU list}"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

[ "$(id -u)" -eq 0 ] || [ "$DRY" -eq 1 ] || die "run as root"

# Expands a CPU list like 2-5,8 into "2 3 4 5 8".
expand_cpus() {
  local part out=()
  IFS=, read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ "$part" == *-* ]]; then
      out+=($(seq "${part%-*}" "${part#*-}"))
    else
      out+=("$part")
    fi
  done
  echo "${out[@]}"
}

# A hex CPU mask of every online CPU except those in $1 (for smp_affinity).
mask_without() {
  local nr cpu mask=0
  nr=$(nproc --all)
  for ((cpu = 0; cpu < nr; cpu++)); do mask=$((mask | (1 << cpu))); done
  for cpu in $(expand_cpus "$1"); do mask=$((mask & ~(1 << cpu))); done
  printf '%x' "$mask"
}

if [ "$HUGEPAGES" -gt 0 ]; then
  echo "== hugepages: $HUGEPAGES x 2 MiB per NUMA node"
  for node in /sys/devices/system/node/node*; do
    [ -d "$node" ] || continue
    run sh -c "echo $HUGEPAGES > $node/hugepages/hugepages-2048kB/nr_hugepages"
    echo "   $(basename "$node"): $(cat "$node/hugepages/hugepages-2048kB/nr_hugepages") reserved"
  done
  if ! mountpoint -q /dev/hugepages; then
    run mkdir -p /dev/hugepages
    run mount -t hugetlbfs -o "uid=$(id -u $USER_NAME 2>/dev/null || echo 0),mode=0770" nodev /dev/hugepages
  fi
fi

if [ ${#BIND[@]} -gt 0 ]; then
  echo "== vfio-pci for ${BIND[*]}"
  command -v dpdk-devbind.py >/dev/null || die "dpdk-devbind.py not found (apt-get install dpdk)"
  [ -d /sys/kernel/iommu_groups ] && [ -n "$(ls -A /sys/kernel/iommu_groups 2>/dev/null)" ] ||
    echo "   warning: no IOMMU groups; boot with intel_iommu=on iommu=pt (or amd_iommu=on)"
  run modprobe vfio-pci
  for pci in "${BIND[@]}"; do
    run dpdk-devbind.py --bind=vfio-pci "$pci"
    group=$(basename "$(readlink -f "/sys/bus/pci/devices/$pci/iommu_group")" 2>/dev/null || true)
    if [ -n "$group" ] && [ -e "/dev/vfio/$group" ]; then
      # espritd runs as $USER_NAME: it must open its VFIO group.
      run chown "$USER_NAME" "/dev/vfio/$group"
    fi
  done
  run dpdk-devbind.py --status-dev net
fi

if [ -n "$WORKERS" ]; then
  echo "== keeping interrupts off worker cores $WORKERS"
  mask=$(mask_without "$WORKERS")
  [ "$mask" != 0 ] || die "the workers would take every CPU; leave one for the kernel and the control plane"
  if systemctl is-active -q irqbalance 2>/dev/null; then
    echo "   irqbalance would undo this: add IRQBALANCE_BANNED_CPULIST=$WORKERS to /etc/default/irqbalance"
  fi
  moved=0
  for irq in /proc/irq/[0-9]*; do
    # Some IRQs (timers, per-CPU) refuse a new affinity: skip them.
    if [ "$DRY" -eq 0 ]; then
      echo "$mask" >"$irq/smp_affinity" 2>/dev/null && moved=$((moved + 1)) || true
    else
      moved=$((moved + 1))
    fi
  done
  echo "   $moved IRQs now on mask $mask"
  echo "   for full isolation, add to the kernel command line and reboot:"
  echo "     isolcpus=managed_irq,domain,$WORKERS nohz_full=$WORKERS rcu_nocbs=$WORKERS"
  echo "   and set [dataplane] cores to the same list in /etc/esprit/esprit.toml"
fi

echo "host-setup: done"
