//! `cargo xtask kernels`: every BPF sampler proven on other kernels than the
//! one we develop on. Each kernel boots under QEMU with a small initramfs
//! (busybox, the release `sonde` and its shared libraries, a static workload
//! program, an agent config with every optional program on); inside, the
//! agent runs twice (hooks `auto`, then forced `raw_tp`) around driven
//! workloads, and the results come back as a tar on a second virtio disk.
//! The host kernel runs the same script natively. `check` turns the
//! results into the kernel × sampler matrix.

mod check;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{cargo, ensure_packages, is_root, root, status, BUILD_PACKAGES};

/// What the matrix needs besides the build: QEMU, a static busybox for the
/// initramfs, cpio to pack it, static libc for the workload, losetup
/// (mount), xz and zstd for compressed modules (Debian's 6.12 has .ko.xz).
const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "libc6-dev",
    "mount",
    "xz-utils",
    "zstd",
];

const INIT: &str = include_str!("../../kernels/init.sh");
const RUN: &str = include_str!("../../kernels/run.sh");
const WORKLOAD: &str = include_str!("../../kernels/workload.c");

/// Virtio drivers the initramfs loads when the kernel builds them as
/// modules (Debian's do); their dependencies come from each module's
/// `depends=` field.
const MODULES: &[&str] = &["virtio_pci", "virtio_blk"];

/// A VM that has not powered off by then is hung (a whole run takes about
/// 20 s under TCG here).
const VM_TIMEOUT: Duration = Duration::from_secs(180);

/// Boots per kernel. Once in six CI runs, a TCG guest's second vCPU
/// stopped taking timer interrupts: the guest's RCU stall detector
/// reported no timer wakeups on CPU 1 while CPU 0 spun in a soft lockup,
/// for the whole timeout. A hang is retried once, its console shown; two
/// hangs fail.
const VM_ATTEMPTS: u32 = 2;

pub const USAGE: &str = "usage: cargo xtask kernels [KERNEL...] [--accel tcg|kvm]

Boots each KERNEL under QEMU, runs the agent inside with driven workloads
(syscalls, pipe ping-pong, O_DIRECT writes to a virtio disk, loopback TCP
connects), once with hooks `auto` and once with `raw_tp` forced, and prints
the kernel x sampler matrix (hook used, programs attached, counters as
driven; exact where the kernel keeps its own count). Exits non-zero when a
sampler that should work on a kernel does not.

KERNEL is one of:
  host                  this machine's kernel, natively (no VM; needs root)
  6.1, 6.12, ...        the newest Debian linux-image-<series>*-cloud-amd64-unsigned
  linux-image-...       a Debian kernel package, by name
  /path/to/vmlinuz-R    a kernel image; modules from ../lib/modules/R if present
Default: host and every kernel series Debian's registry serves (6.1, 6.12).

--accel tcg (default) or kvm. Nested KVM hangs at boot on our VMs; TCG boots
a kernel in about 6 s. Writes target/kernels/matrix.md.";

/// One kernel to try.
#[derive(Clone, Debug)]
enum Kernel {
    Host,
    Image {
        label: String,
        vmlinuz: PathBuf,
        modules: Option<PathBuf>,
    },
}

pub fn kernels(args: &[String]) -> Result<()> {
    let mut specs = Vec::new();
    let mut accel = "tcg".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--accel" => {
                accel = it.next().context("--accel needs tcg or kvm")?.clone();
                if accel != "tcg" && accel != "kvm" {
                    bail!("--accel {accel}: tcg or kvm");
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other if other.starts_with('-') => bail!("unknown option `{other}`\n\n{USAGE}"),
            other => specs.push(other.to_string()),
        }
    }
    if !is_root() {
        bail!("cargo xtask kernels runs the agent (BPF) and apt: run it as root");
    }
    let mut packages = BUILD_PACKAGES.to_vec();
    packages.extend(PACKAGES);
    ensure_packages(&packages)?;
    if specs.is_empty() {
        specs.push("host".into());
        specs.extend(series_served()?);
    }
    let dir = root().join("target/kernels");
    std::fs::create_dir_all(&dir)?;
    let kernels = specs
        .iter()
        .map(|s| resolve(s, &dir))
        .collect::<Result<Vec<_>>>()?;

    status(cargo().args(["build", "--release", "--bin", "sonde"]))?;
    let stage = dir.join("stage");
    stage_common(&stage)?;

    let mut results = Vec::new();
    for kernel in &kernels {
        let started = Instant::now();
        let (label, out) = match kernel {
            Kernel::Host => ("host".to_string(), run_host(&dir, &stage)?),
            Kernel::Image {
                label,
                vmlinuz,
                modules,
            } => (
                label.clone(),
                run_vm(&dir, &stage, label, vmlinuz, modules.as_deref(), &accel)?,
            ),
        };
        eprintln!(
            "xtask: kernels: {label} done in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        results.push(check::Run {
            label,
            quiet: !matches!(kernel, Kernel::Host),
            emulated: matches!(kernel, Kernel::Image { .. }) && accel == "tcg",
            dir: out,
        });
    }
    let matrix = check::matrix(&results)?;
    println!("{}", matrix.text);
    let path = dir.join("matrix.md");
    std::fs::write(&path, &matrix.text)?;
    eprintln!("xtask: wrote {}", path.display());
    if matrix.failures > 0 {
        bail!(
            "{} check(s) failed: a sampler does not work as it should on a kernel (see above)",
            matrix.failures
        );
    }
    Ok(())
}

/// The `<major>.<minor>` series of Debian's cloud kernels the registry
/// serves, oldest first.
fn series_served() -> Result<Vec<String>> {
    let mut series: Vec<String> = cloud_packages()?
        .iter()
        .filter_map(|p| series_of(p))
        .collect();
    series.sort_by_key(|s| natural_key(s));
    series.dedup();
    if series.is_empty() {
        bail!("apt knows no linux-image-*-cloud-amd64-unsigned package (apt-get update?)");
    }
    Ok(series)
}

/// Whether apt serves a Debian cloud kernel of `series` (Debian 12 does;
/// Ubuntu and newer Debian releases may not serve 6.1).
pub fn series_available(series: &str) -> bool {
    cloud_packages().is_ok_and(|p| p.iter().any(|p| series_of(p).as_deref() == Some(series)))
}

/// `linux-image-6.1.0-56-cloud-amd64-unsigned` → `6.1`.
fn series_of(package: &str) -> Option<String> {
    let version = package.strip_prefix("linux-image-")?;
    let mut parts = version.split(['.', '-', '+']);
    let major = parts.next()?;
    let minor = parts.next()?;
    (major.chars().all(|c| c.is_ascii_digit()) && minor.chars().all(|c| c.is_ascii_digit()))
        .then(|| format!("{major}.{minor}"))
}

/// Names of the installable `linux-image-*-cloud-amd64-unsigned` packages.
fn cloud_packages() -> Result<Vec<String>> {
    let search = || -> Result<Vec<String>> {
        let out = Command::new("apt-cache")
            .args([
                "search",
                "--names-only",
                "^linux-image-[0-9].*-cloud-amd64-unsigned$",
            ])
            .output()
            .context("cannot run apt-cache")?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect())
    };
    let found = search()?;
    if !found.is_empty() {
        return Ok(found);
    }
    status(Command::new("apt-get").args(["update", "-q"]))?;
    search()
}

/// Sorts `6.1.0-9` before `6.1.0-56`: digit runs compare as numbers.
fn natural_key(s: &str) -> Vec<(u64, String)> {
    let mut key = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        let mut run = String::new();
        let digit = c.is_ascii_digit();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_digit() != digit {
                break;
            }
            run.push(c);
            chars.next();
        }
        key.push(if digit {
            (run.parse().unwrap_or(u64::MAX), String::new())
        } else {
            (0, run)
        });
    }
    key
}

fn resolve(spec: &str, dir: &Path) -> Result<Kernel> {
    if spec == "host" {
        return Ok(Kernel::Host);
    }
    if spec.contains('/') {
        let vmlinuz = PathBuf::from(spec);
        if !vmlinuz.is_file() {
            bail!("kernel image {spec} does not exist");
        }
        let name = vmlinuz.file_name().unwrap_or_default().to_string_lossy();
        let release = name.strip_prefix("vmlinuz-").unwrap_or(&name).to_string();
        let modules = vmlinuz
            .parent()
            .and_then(Path::parent)
            .map(|r| r.join("lib/modules").join(&release))
            .filter(|m| m.is_dir());
        return Ok(Kernel::Image {
            label: release,
            vmlinuz,
            modules,
        });
    }
    let package = if spec.starts_with("linux-image-") {
        spec.to_string()
    } else {
        let mut matching: Vec<String> = cloud_packages()?
            .into_iter()
            .filter(|p| series_of(p).as_deref() == Some(spec))
            .collect();
        matching.sort_by_key(|p| natural_key(p));
        matching.pop().with_context(|| {
            format!("no Debian kernel package of series {spec} (linux-image-{spec}*-cloud-amd64-unsigned)")
        })?
    };
    extract(&package, dir)
}

/// Downloads (once) and unpacks a kernel package under target/kernels.
fn extract(package: &str, dir: &Path) -> Result<Kernel> {
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs)?;
    let find_deb = || -> Option<PathBuf> {
        std::fs::read_dir(&debs).ok()?.flatten().find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with(&format!("{package}_")) && name.ends_with(".deb")).then(|| e.path())
        })
    };
    let deb = match find_deb() {
        Some(d) => d,
        None => {
            status(
                Command::new("apt-get")
                    .args(["download", "-q", package])
                    .current_dir(&debs),
            )
            .with_context(|| format!("cannot download {package}"))?;
            find_deb().with_context(|| format!("apt-get download left no {package} .deb"))?
        }
    };
    let tree = dir.join(package);
    if !tree.join("boot").is_dir() {
        let _ = std::fs::remove_dir_all(&tree);
        status(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
    }
    let vmlinuz = std::fs::read_dir(tree.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .with_context(|| format!("{package} has no boot/vmlinuz-*"))?;
    let release =
        vmlinuz.file_name().unwrap_or_default().to_string_lossy()["vmlinuz-".len()..].to_string();
    let modules = tree.join("lib/modules").join(&release);
    Ok(Kernel::Image {
        label: release,
        vmlinuz,
        modules: modules.is_dir().then_some(modules),
    })
}

/// The initramfs contents every kernel shares: busybox, the agent and its
/// shared libraries at their paths, the workload, the scripts and configs.
fn stage_common(stage: &Path) -> Result<()> {
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

    let sonde = root().join("target/release/sonde");
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
fn module_order(tree: &Path) -> Result<Vec<PathBuf>> {
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
fn module_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let (stem, ext) = name.split_once(".ko")?;
    ["", ".xz", ".zst", ".gz"]
        .contains(&ext)
        .then(|| stem.to_string())
}

/// A module's ELF, decompressed: busybox insmod loads plain `.ko` only.
fn module_bytes(path: &Path) -> Result<Vec<u8>> {
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

/// Boots `vmlinuz` with the staged initramfs plus its virtio modules; the
/// results are the tar the VM wrote to its second disk, unpacked.
fn run_vm(
    dir: &Path,
    stage: &Path,
    label: &str,
    vmlinuz: &Path,
    modules: Option<&Path>,
    accel: &str,
) -> Result<PathBuf> {
    let work = dir.join("runs").join(label);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;

    let mods = stage.join("modules");
    let _ = std::fs::remove_dir_all(&mods);
    std::fs::create_dir_all(&mods)?;
    let mut order = String::new();
    if let Some(tree) = modules {
        for ko in module_order(tree)? {
            let name = format!("{}.ko", module_name(&ko).unwrap_or_default());
            std::fs::write(mods.join(&name), module_bytes(&ko)?)?;
            order.push_str(&name);
            order.push('\n');
        }
    }
    std::fs::write(mods.join("order"), order)?;

    let initrd = work.join("initrd.gz");
    status(
        Command::new("sh")
            .arg("-c")
            .arg("find . | cpio --quiet -o -H newc | gzip -1 > \"$0\"")
            .arg(&initrd)
            .current_dir(stage),
    )?;
    let disk = work.join("disk.img");
    let results = work.join("results.tar");
    let console = work.join("console.log");
    let mut attempt = 1;
    loop {
        // Fresh disks each boot: a hung run leaves them half written.
        for (path, size) in [(&disk, 64u64 << 20), (&results, 16u64 << 20)] {
            std::fs::File::create(path)?.set_len(size)?;
        }
        let mut qemu = Command::new("qemu-system-x86_64");
        qemu.args(["-accel", accel, "-cpu", "max", "-smp", "2", "-m", "1024"])
            .arg("-kernel")
            .arg(vmlinuz)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", "console=ttyS0 panic=-1 loglevel=4"])
            .arg("-drive")
            .arg(format!("file={},if=virtio,format=raw", disk.display()))
            .arg("-drive")
            .arg(format!("file={},if=virtio,format=raw", results.display()))
            .args(["-display", "none", "-monitor", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .stdin(Stdio::null());
        eprintln!(
            "xtask: kernels: booting {label} under QEMU ({accel}), attempt {attempt}/{VM_ATTEMPTS}"
        );
        let mut child = qemu.spawn().context("cannot start qemu-system-x86_64")?;
        let started = Instant::now();
        let exit = loop {
            if let Some(st) = child.try_wait()? {
                break Some(st);
            }
            if started.elapsed() > VM_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        match exit {
            Some(st) if st.success() => break,
            Some(st) => bail!(
                "{label}: qemu exited with {st}; console: {}",
                console.display()
            ),
            None => {
                let text = std::fs::read_to_string(&console).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                eprintln!(
                    "xtask: kernels: {label}: the VM did not power off within {} s; its console ends:",
                    VM_TIMEOUT.as_secs()
                );
                for line in tail.iter().rev() {
                    eprintln!("  {line}");
                }
                if attempt == VM_ATTEMPTS {
                    bail!(
                        "{label}: the VM hung in {VM_ATTEMPTS} boots; console: {}",
                        console.display()
                    );
                }
                attempt += 1;
            }
        }
    }
    let out = work.join("out");
    std::fs::create_dir_all(&out)?;
    status(
        Command::new("tar")
            .arg("-xf")
            .arg(&results)
            .arg("-C")
            .arg(&out)
            .arg("--strip-components=1"),
    )
    .with_context(|| {
        format!(
            "{label}: no results from the VM; console: {}",
            console.display()
        )
    })?;
    Ok(out)
}

/// The same script on this machine's kernel: busybox applets first in
/// PATH, a loop device on a scratch file as the block device.
fn run_host(dir: &Path, stage: &Path) -> Result<PathBuf> {
    let work = dir.join("runs/host");
    let _ = std::fs::remove_dir_all(&work);
    let applets = work.join("bin");
    let out = work.join("out");
    std::fs::create_dir_all(&applets)?;
    std::fs::create_dir_all(&out)?;
    status(
        Command::new(stage.join("bin/busybox"))
            .args(["--install", "-s"])
            .arg(&applets),
    )?;
    let backing = work.join("disk.img");
    std::fs::File::create(&backing)?.set_len(64 << 20)?;
    let losetup = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&backing)
        .output()
        .context("cannot run losetup")?;
    if !losetup.status.success() {
        bail!(
            "losetup failed: {}",
            String::from_utf8_lossy(&losetup.stderr).trim()
        );
    }
    let device = String::from_utf8_lossy(&losetup.stdout).trim().to_string();
    let path = format!(
        "{}:{}",
        applets.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    eprintln!("xtask: kernels: running on the host kernel (block device {device})");
    let ran = status(
        Command::new(stage.join("bin/busybox"))
            .arg("sh")
            .arg(stage.join("matrix/run.sh"))
            .arg(&out)
            .arg(&device)
            .arg(stage.join("matrix"))
            .env("PATH", path),
    );
    let _ = Command::new("losetup").args(["-d", &device]).status();
    ran?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_and_natural_order() {
        assert_eq!(
            series_of("linux-image-6.1.0-56-cloud-amd64-unsigned").as_deref(),
            Some("6.1")
        );
        assert_eq!(
            series_of("linux-image-6.12.117+deb12-cloud-amd64-unsigned").as_deref(),
            Some("6.12")
        );
        assert_eq!(series_of("linux-image-cloud-amd64"), None);
        let mut v = vec!["6.1.0-56", "6.1.0-9", "6.12.1", "6.1.0-10"];
        v.sort_by_key(|s| natural_key(s));
        assert_eq!(v, ["6.1.0-9", "6.1.0-10", "6.1.0-56", "6.12.1"]);
    }

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
