//! The initramfs every kernel boots: busybox, the release agent and its
//! shared libraries, the static workload, the scripts, the agent configs,
//! and the virtio modules a kernel needs, dependencies first.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{root, status};

const INIT: &str = include_str!("../../kernels/init.sh");
const RUN: &str = include_str!("../../kernels/run.sh");
const WORKLOAD: &str = include_str!("../../kernels/workload.c");

/// Virtio drivers the initramfs loads when the kernel builds them as
/// modules (Debian's do); their dependencies come from each module's
/// `depends=` field.
const MODULES: &[&str] = &["virtio_pci", "virtio_blk"];

/// The initramfs contents every kernel shares: busybox, the agent and its
/// shared libraries at their paths, the workload, the scripts and configs.
pub(super) fn stage_common(stage: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(stage);
    let matrix = stage.join("matrix");
    for d in ["bin", "matrix", "modules"] {
        std::fs::create_dir_all(stage.join(d))?;
    }
    let busybox = Path::new("/bin/busybox");
    let ldd = Command::new("ldd").arg(busybox).output()?;
    if ldd.status.success() && !String::from_utf8_lossy(&ldd.stdout).contains("not a dynamic") {
        bail!("/bin/busybox is not static: install busybox-static");
    }
    std::fs::copy(busybox, stage.join("bin/busybox"))?;
    write_exec(&stage.join("init"), INIT)?;
    write_exec(&matrix.join("run.sh"), RUN)?;

    let sonde = crate::target_dir().join("release/sonde");
    std::fs::copy(&sonde, matrix.join("sonde"))?;
    for lib in shared_libraries(&sonde)? {
        let to = stage.join(lib.strip_prefix("/").unwrap_or(&lib));
        std::fs::create_dir_all(to.parent().unwrap_or(stage))?;
        std::fs::copy(&lib, &to).with_context(|| format!("cannot copy {}", lib.display()))?;
    }

    let source = stage.join("workload.c");
    std::fs::write(&source, WORKLOAD)?;
    status(
        Command::new("clang")
            .args(["-static", "-O2", "-Wall", "-Werror", "-o"])
            .arg(matrix.join("workload"))
            .arg(&source),
    )?;
    std::fs::remove_file(&source)?;

    let config = std::fs::read_to_string(root().join("config/agent.toml"))?;
    let auto = agent_config(&config)?;
    std::fs::write(matrix.join("agent-auto.toml"), &auto)?;
    std::fs::write(
        matrix.join("agent-raw_tp.toml"),
        auto.replace("\nhook = \"auto\"", "\nhook = \"raw_tp\""),
    )?;
    Ok(())
}

/// The agent config of the matrix: config/agent.toml on its own port,
/// with every optional program on, so every program loads somewhere.
fn agent_config(config: &str) -> Result<String> {
    let mut c = config.to_string();
    for (from, to) in [
        (
            "address = \"127.0.0.1:4251\"",
            "address = \"127.0.0.1:4391\"",
        ),
        ("\noffcpu = false", "\noffcpu = true"),
        ("\nlatency = \"off\"", "\nlatency = \"all\""),
        ("\ncalls = false", "\ncalls = true"),
        ("\ntime = false", "\ntime = true"),
        ("\ntlb = false", "\ntlb = true"),
        ("\ninterval = \"10s\"", "\ninterval = \"1s\""),
        // The VM's cgroups are seconds old: export them at once.
        ("\nmin_age = \"30s\"", "\nmin_age = \"0s\""),
    ] {
        if !c.contains(from) {
            bail!(
                "config/agent.toml no longer contains `{}`: update xtask/src/kernels",
                from.trim()
            );
        }
        c = c.replace(from, to);
    }
    Ok(c)
}

fn write_exec(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The shared libraries `ldd` lists for `bin`, with the dynamic loader.
fn shared_libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = l.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// The `.ko` files to load for `MODULES`, dependencies first, as names
/// relative to the initramfs' /modules. Modules the kernel builds in are
/// not found and not needed.
pub(super) fn module_order(tree: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    collect_modules(tree, &mut files)?;
    let find = |name: &str| {
        files
            .iter()
            .find(|p| module_name(p).as_deref() == Some(name))
            .cloned()
    };
    let mut order: Vec<PathBuf> = Vec::new();
    fn visit(
        name: &str,
        find: &dyn Fn(&str) -> Option<PathBuf>,
        order: &mut Vec<PathBuf>,
        depth: usize,
    ) -> Result<()> {
        let Some(path) = find(name) else {
            return Ok(());
        };
        if order.contains(&path) || depth > 16 {
            return Ok(());
        }
        let bytes = module_bytes(&path)?;
        for dep in modinfo_depends(&bytes) {
            visit(&dep, find, order, depth + 1)?;
        }
        order.push(path);
        Ok(())
    }
    for m in MODULES {
        visit(m, &find, &mut order, 0)?;
    }
    Ok(order)
}

/// `depends=` of a module's .modinfo: NUL-separated `key=value` strings.
fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    ko.split(|&b| b == 0)
        .find_map(|s| s.strip_prefix(b"depends="))
        .map(|d| {
            String::from_utf8_lossy(d)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.replace('-', "_"))
                .collect()
        })
        .unwrap_or_default()
}

fn collect_modules(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        if path.is_dir() {
            collect_modules(&path, out)?;
        } else if module_name(&path).is_some() {
            out.push(path);
        }
    }
    Ok(())
}

/// `virtio_blk` of `.../virtio_blk.ko` or `.ko.xz` (Debian compresses
/// modules from 6.12 on), `.ko.zst`, `.ko.gz`.
pub(super) fn module_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let (stem, ext) = name.split_once(".ko")?;
    ["", ".xz", ".zst", ".gz"]
        .contains(&ext)
        .then(|| stem.to_string())
}

/// A module's ELF, decompressed: busybox insmod loads plain `.ko` only.
pub(super) fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".ko.xz") {
        "xz"
    } else if name.ends_with(".ko.zst") {
        "zstd"
    } else if name.ends_with(".ko.gz") {
        "gzip"
    } else {
        return std::fs::read(path).with_context(|| format!("cannot read {name}"));
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("cannot run {tool} to decompress {name}"))?;
    if !out.status.success() {
        bail!("{tool} -dc {name} failed");
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_dependencies() {
        let ko = b"\x7fELF...\0license=GPL\0depends=virtio_ring,virtio-pci-modern-dev\0intree=Y\0";
        assert_eq!(
            modinfo_depends(ko),
            ["virtio_ring", "virtio_pci_modern_dev"]
        );
        assert!(modinfo_depends(b"\0depends=\0").is_empty());
    }

    #[test]
    fn agent_config_turns_every_program_on() {
        let c = std::fs::read_to_string(root().join("config/agent.toml")).unwrap();
        let m = agent_config(&c).unwrap();
        assert!(m.contains("127.0.0.1:4391") && m.contains("\noffcpu = true"));
        assert!(m.contains("\nlatency = \"all\"") && m.contains("\ntlb = true"));
    }
}
