//! What the running kernel's BTF says: which tracepoints exist, and the
//! values of enums whose numbering differs between kernels.

/// The running kernel's release, for messages.
pub(super) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown release".into())
}

/// Whether the running kernel has tracepoint `tp`: its BTF declares a
/// `btf_trace_<tp>` typedef for every tracepoint. The names are collected
/// once (the parsed BTF, megabytes, is not kept); without kernel BTF every
/// tracepoint is assumed present and a missing one fails at load.
pub(super) fn kernel_has_tracepoint(tp: &str) -> bool {
    static TRACEPOINTS: std::sync::OnceLock<Option<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    let names = TRACEPOINTS.get_or_init(|| {
        let btf = libbpf_rs::btf::Btf::from_vmlinux().ok()?;
        let names = btf
            .type_by_kind::<libbpf_rs::btf::types::Typedef<'_>>()
            .filter_map(|t| {
                let name = t.name()?.to_str()?;
                name.strip_prefix("btf_trace_").map(str::to_string)
            })
            .collect();
        Some(names)
    });
    names.as_ref().is_none_or(|n| n.contains(tp))
}

/// Names of the values `0..n` of kernel enum `name`, read from the running
/// kernel's BTF (numbering differs between kernels), lowercased, without
/// `prefix`; `None` for values the enum does not name (or `NR_*` counts).
pub fn enum_names(name: &str, prefix: &str, n: usize) -> Vec<Option<String>> {
    let mut names = vec![None; n];
    let Ok(btf) = libbpf_rs::btf::Btf::from_vmlinux() else {
        return names;
    };
    if let Some(e) = btf.type_by_name::<libbpf_rs::btf::types::Enum<'_>>(name) {
        for m in e.iter() {
            let (Some(member), Ok(v)) = (m.name, usize::try_from(m.value)) else {
                continue;
            };
            let member = member.to_string_lossy();
            if v < n && !member.starts_with("NR_") {
                names[v] = Some(member.trim_start_matches(prefix).to_lowercase());
            }
        }
    }
    names
}

/// The value of enumerator `member` in the running kernel's BTF, in any
/// enum, named or anonymous (CO-RE enum relocations need the enum's name,
/// and some kernels declare these in an anonymous enum).
pub fn enum_value(member: &str) -> Option<i64> {
    let btf = libbpf_rs::btf::Btf::from_vmlinux().ok()?;
    let value = btf
        .type_by_kind::<libbpf_rs::btf::types::Enum<'_>>()
        .find_map(|e| {
            e.iter()
                .find(|m| m.name.is_some_and(|n| n.to_str() == Some(member)))
                .map(|m| m.value)
        });
    value
}
