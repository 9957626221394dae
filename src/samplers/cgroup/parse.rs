//! Pure parsers of cgroupfs files, v2 and v1, into the values cAdvisor
//! exports. Each takes the file's text; a missing file is the caller's.

/// `key value` lines (`cpu.stat`, `memory.stat`, `memory.events`,
/// `memory.oom_control`, `cpuacct.stat`): the value of `key`.
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A file holding one number (`memory.current`, `cpuacct.usage`).
pub fn single(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// A limit: `max` (v2) or a v1 value near 2^63 (page-rounded
/// `PAGE_COUNTER_MAX`) means unlimited, reported as 0 like cAdvisor's
/// spec metrics leave it unset.
pub fn limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" || t == "-1" {
        return Some(0);
    }
    let v: u64 = t.parse().ok()?;
    Some(if v >= 1 << 62 { 0 } else { v })
}

/// v2 `cpu.max`: `$QUOTA $PERIOD` in microseconds, `max` for none.
/// Returns (quota µs or 0, period µs).
pub fn cpu_max(text: &str) -> Option<(u64, u64)> {
    let mut it = text.split_whitespace();
    let quota = it.next()?;
    let period = it.next()?.parse().ok()?;
    let quota = if quota == "max" {
        0
    } else {
        quota.parse().ok()?
    };
    Some((quota, period))
}

/// v2 `io.stat`: read and written bytes summed over devices.
/// `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0`
pub fn io_stat(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0u64, 0u64);
    for line in text.lines() {
        for field in line.split_whitespace().skip(1) {
            match field.split_once('=') {
                Some(("rbytes", v)) => r += v.parse::<u64>().unwrap_or(0),
                Some(("wbytes", v)) => w += v.parse::<u64>().unwrap_or(0),
                _ => {}
            }
        }
    }
    (r, w)
}

/// v1 `blkio.throttle.io_service_bytes[_recursive]`: read and written
/// bytes summed over devices (`8:0 Read 4096`; the `Total` line skipped).
pub fn blkio_bytes(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0u64, 0u64);
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(_dev), Some(op), Some(v)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let v = v.parse::<u64>().unwrap_or(0);
        match op {
            "Read" => r += v,
            "Write" => w += v,
            _ => {}
        }
    }
    (r, w)
}

/// `*.pressure`: the `total=` (µs) of the `some` and `full` lines.
pub fn pressure(text: &str) -> (Option<u64>, Option<u64>) {
    let total = |kind: &str| {
        text.lines()
            .find(|l| l.starts_with(kind))?
            .split_whitespace()
            .find_map(|f| f.strip_prefix("total="))?
            .parse()
            .ok()
    };
    (total("some "), total("full "))
}

/// Working set as cAdvisor computes it: usage minus inactive file pages,
/// floored at 0.
pub fn working_set(usage: u64, inactive_file: u64) -> u64 {
    usage.saturating_sub(inactive_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    // In the shape a cgroup v2 kernel (6.x) writes them for a container's
    // cgroup; the real files are read in the kernel matrix's v2 VMs.
    const CPU_STAT: &str = "usage_usec 8733129\nuser_usec 5966101\nsystem_usec 2767027\ncore_sched.force_idle_usec 0\nnr_periods 1187\nnr_throttled 33\nthrottled_usec 1559040\nnr_bursts 0\nburst_usec 0\n";
    const MEMORY_STAT: &str = "anon 21774336\nfile 64630784\nkernel 3731456\nkernel_stack 294912\npagetables 499712\nsec_pagetables 0\npercpu 2400\nsock 0\nvmalloc 0\nshmem 16384\nzswap 0\nzswapped 0\nfile_mapped 27967488\nfile_dirty 0\nfile_writeback 0\nswapcached 0\nanon_thp 0\nfile_thp 0\nshmem_thp 0\ninactive_anon 21745664\nactive_anon 45056\ninactive_file 40509440\nactive_file 24104960\nunevictable 0\nslab_reclaimable 2230904\nslab_unreclaimable 572632\nslab 2803536\nworkingset_refault_anon 0\nworkingset_refault_file 0\nworkingset_activate_anon 0\nworkingset_activate_file 0\nworkingset_restore_anon 0\nworkingset_restore_file 0\nworkingset_nodereclaim 0\npgscan 0\npgsteal 0\npgscan_kswapd 0\npgscan_direct 0\npgscan_khugepaged 0\npgsteal_kswapd 0\npgsteal_direct 0\npgsteal_khugepaged 0\npgfault 123964\npgmajfault 392\npgrefill 0\npgactivate 5929\npgdeactivate 0\npglazyfree 0\npglazyfreed 0\nthp_fault_alloc 0\nthp_collapse_alloc 0\n";
    const MEMORY_EVENTS: &str = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";
    const IO_STAT: &str = "259:0 rbytes=51617792 wbytes=1794048 rios=1491 wios=193 dbytes=0 dios=0\n8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n";
    const CPU_PRESSURE: &str = "some avg10=0.00 avg60=0.02 avg300=0.00 total=1210339\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=864031\n";
    const IO_PRESSURE_OLD: &str = "some avg10=0.00 avg60=0.00 avg300=0.00 total=4711\n";

    #[test]
    fn v2_files() {
        assert_eq!(keyed(CPU_STAT, "usage_usec"), Some(8733129));
        assert_eq!(keyed(CPU_STAT, "user_usec"), Some(5966101));
        assert_eq!(keyed(CPU_STAT, "system_usec"), Some(2767027));
        assert_eq!(keyed(CPU_STAT, "nr_periods"), Some(1187));
        assert_eq!(keyed(CPU_STAT, "nr_throttled"), Some(33));
        assert_eq!(keyed(CPU_STAT, "throttled_usec"), Some(1559040));
        // A key that is a prefix of another must not match it.
        assert_eq!(keyed(CPU_STAT, "burst"), None);
        assert_eq!(keyed(MEMORY_STAT, "anon"), Some(21774336));
        assert_eq!(keyed(MEMORY_STAT, "file"), Some(64630784));
        assert_eq!(keyed(MEMORY_STAT, "inactive_file"), Some(40509440));
        assert_eq!(keyed(MEMORY_EVENTS, "oom_kill"), Some(2));
        assert_eq!(io_stat(IO_STAT), (51617792 + 4096, 1794048 + 8192));
        assert_eq!(pressure(CPU_PRESSURE), (Some(1210339), Some(864031)));
        assert_eq!(pressure(IO_PRESSURE_OLD), (Some(4711), None));
        assert_eq!(cpu_max("max 100000\n"), Some((0, 100000)));
        assert_eq!(cpu_max("50000 100000\n"), Some((50000, 100000)));
        assert_eq!(limit("max\n"), Some(0));
        assert_eq!(limit("536870912\n"), Some(536870912));
        assert_eq!(single("91234304\n"), Some(91234304));
        assert_eq!(working_set(91234304, 40509440), 91234304 - 40509440);
        assert_eq!(working_set(10, 40), 0);
    }

    #[test]
    fn v1_files() {
        let cpuacct_stat = "user 431\nsystem 120\n";
        assert_eq!(keyed(cpuacct_stat, "user"), Some(431));
        let cpu_stat =
            "nr_periods 10\nnr_throttled 3\nthrottled_time 123456789\nnr_bursts 0\nburst_time 0\n";
        assert_eq!(keyed(cpu_stat, "throttled_time"), Some(123456789));
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n";
        assert_eq!(keyed(oom, "oom_kill"), Some(1));
        assert_eq!(limit("9223372036854771712\n"), Some(0));
        assert_eq!(limit("-1\n"), Some(0));
        assert_eq!(limit("50000\n"), Some(50000));
        let blkio = "8:0 Read 8192\n8:0 Write 4096\n8:0 Sync 12288\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 12288\n8:16 Read 1\n8:16 Write 2\nTotal 12291\n";
        assert_eq!(blkio_bytes(blkio), (8193, 4098));
    }
}
