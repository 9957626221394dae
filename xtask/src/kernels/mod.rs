//! `cargo xtask kernels`: every BPF sampler proven on other kernels than the
//! one we develop on. Each kernel boots under QEMU with a small initramfs
//! (busybox, the release `sonde` and its shared libraries, a static workload
//! program, an agent config with every optional program on); inside, the
//! agent runs twice (hooks `auto`, then forced `raw_tp`) around driven
//! workloads, and the results come back as a tar on a second virtio disk.
//! The host kernel runs the same script natively. `check` turns the
//! results into the kernel × sampler matrix.

mod check;
mod debian;
mod initramfs;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{cargo, ensure_packages, is_root, status, BUILD_PACKAGES};
use debian::{resolve, series_served};
use initramfs::{module_bytes, module_name, module_order, stage_common};

pub use debian::series_available;

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
    let default_set = specs.is_empty();
    if specs.is_empty() {
        specs.push("host".into());
        specs.extend(series_served()?);
    }
    let dir = crate::target_dir().join("kernels");
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
    // The docs show the default matrix (this host and every series apt
    // serves), not a run of a few kernels (`cargo xtask test` boots 6.1).
    if default_set && matrix.failures == 0 {
        crate::write_region("docs/kernels.md", "kernels", &matrix.table)?;
    }
    if matrix.failures > 0 {
        bail!(
            "{} check(s) failed: a sampler does not work as it should on a kernel (see above)",
            matrix.failures
        );
    }
    Ok(())
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
