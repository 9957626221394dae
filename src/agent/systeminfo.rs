//! `/systeminfo` and `/metrics/descriptions`: what Rezolus's recorder and
//! viewer ask an agent for, in Rezolus's shapes (its `SystemSummary`, and a
//! map of metric name to help), so `rezolus record` can use a Sonde agent
//! and our recordings carry the same metadata.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

#[derive(Serialize, Default)]
pub struct SystemSummary {
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub hostname: Option<String>,
    pub cpu_model: Option<String>,
    pub cpu_vendor: Option<String>,
    /// Logical CPUs online.
    pub cpus: usize,
    pub cores: Option<usize>,
    pub packages: Option<usize>,
    pub smt: Option<bool>,
    pub memory_total_bytes: Option<u64>,
    pub numa_nodes: Option<usize>,
    pub cpu_topology: Vec<CpuTopology>,
    /// Not collected (Rezolus's shape keeps the keys).
    pub caches: Vec<serde_json::Value>,
    pub nics: Vec<serde_json::Value>,
    pub gpus: Vec<serde_json::Value>,
}

#[derive(Serialize)]
pub struct CpuTopology {
    pub cpu: usize,
    pub core: usize,
    pub die: usize,
    pub package: usize,
    pub numa_node: Option<usize>,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn read_num(path: &str) -> Option<usize> {
    read(path)?.parse().ok()
}

/// `0-3,8-11` (a sysfs CPU list) → the CPUs.
pub fn cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b.min(a + 65_536));
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}

/// `model name` and `vendor_id` of the first CPU in /proc/cpuinfo.
pub fn cpuinfo(text: &str) -> (Option<String>, Option<String>) {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    (field("model name"), field("vendor_id"))
}

pub fn collect() -> SystemSummary {
    let (cpu_model, cpu_vendor) = cpuinfo(&read("/proc/cpuinfo").unwrap_or_default());
    let online = cpu_list(&read("/sys/devices/system/cpu/online").unwrap_or_default());
    let nodes: Vec<usize> = cpu_list(&read("/sys/devices/system/node/online").unwrap_or_default());
    let node_of = |cpu: usize| {
        nodes.iter().copied().find(|n| {
            std::path::Path::new(&format!("/sys/devices/system/node/node{n}/cpu{cpu}")).exists()
        })
    };
    let mut topology = Vec::new();
    for &cpu in &online {
        let t = |f: &str| read_num(&format!("/sys/devices/system/cpu/cpu{cpu}/topology/{f}"));
        topology.push(CpuTopology {
            cpu,
            core: t("core_id").unwrap_or(cpu),
            die: t("die_id").unwrap_or(0),
            package: t("physical_package_id").unwrap_or(0),
            numa_node: node_of(cpu),
        });
    }
    let cores: BTreeSet<(usize, usize, usize)> = topology
        .iter()
        .map(|t| (t.package, t.die, t.core))
        .collect();
    let packages: BTreeSet<usize> = topology.iter().map(|t| t.package).collect();
    let memory = read("/proc/meminfo").and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    SystemSummary {
        os: "linux".into(),
        // Rezolus reports /proc/version here, not only the release.
        kernel: read("/proc/version").unwrap_or_default(),
        arch: std::env::consts::ARCH.into(),
        hostname: read("/proc/sys/kernel/hostname"),
        cpu_model,
        cpu_vendor,
        cpus: online.len(),
        cores: (!topology.is_empty()).then_some(cores.len()),
        packages: (!topology.is_empty()).then_some(packages.len()),
        smt: (!topology.is_empty()).then_some(cores.len() < online.len()),
        memory_total_bytes: memory,
        numa_nodes: (!nodes.is_empty()).then_some(nodes.len()),
        cpu_topology: topology,
        ..SystemSummary::default()
    }
}

/// Every family's registry name → its help text.
pub fn descriptions() -> BTreeMap<&'static str, &'static str> {
    crate::registry::families()
        .iter()
        .filter(|f| f.desc.sampler != "test")
        .map(|f| (f.desc.name, f.desc.help))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_and_cpuinfo() {
        assert_eq!(cpu_list("0-3,8,10-11\n"), [0, 1, 2, 3, 8, 10, 11]);
        assert!(cpu_list("").is_empty());
        let (model, vendor) =
            cpuinfo("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n");
        assert_eq!(model.as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(vendor.as_deref(), Some("AuthenticAMD"));
    }

    #[test]
    fn this_machine_is_described() {
        let s = collect();
        assert!(s.cpus > 0 && !s.kernel.is_empty() && s.memory_total_bytes.unwrap_or(0) > 0);
        assert_eq!(s.cpu_topology.len(), s.cpus);
        assert!(descriptions().contains_key("syscalls"));
    }
}
