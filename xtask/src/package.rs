//! `cargo xtask package`: the Debian package, staged by hand and built with
//! `dpkg-deb` (no cargo-deb to download), and the install / purge check the
//! test suite runs on it.
//!
//! Layout: /usr/bin/sonde (stripped), /etc/sonde/{agent,exporter,push,
//! hindsight}.toml (conffiles; config/*.toml as they are, since their
//! defaults already are the production paths: listen on loopback, state
//! under /var/lib/sonde), /lib/systemd/system/sonde*.service from
//! packaging/systemd, /usr/share/doc/sonde/{README.md,docs/*.md,copyright,
//! changelog.Debian.gz} (the README's links to docs/ work there), and
//! maintainer scripts from packaging/debian.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cargo, have, root, status, target_dir};

const CONFIGS: [&str; 4] = ["agent", "exporter", "push", "hindsight"];
const MAINTAINER: &str = "Sonde authors <sonde@localhost>";

const USAGE: &str = "usage: cargo xtask package [--binary PATH] [--install-check]";

pub fn package(args: &[String]) -> Result<()> {
    let mut binary = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--binary" => binary = Some(PathBuf::from(it.next().context("--binary needs a path")?)),
            // The test suite's step alone (root): build, install, check, purge.
            "--install-check" => return install_check(),
            other => bail!("unknown argument `{other}`\n\n{USAGE}"),
        }
    }
    let deb = build(binary)?;
    let size = std::fs::metadata(&deb)?.len();
    println!(
        "{} ({:.1} MiB)",
        deb.display(),
        size as f64 / (1 << 20) as f64
    );
    Ok(())
}

/// Builds the package and returns its path.
pub fn build(binary: Option<PathBuf>) -> Result<PathBuf> {
    for tool in ["dpkg-deb", "dpkg"] {
        if !have(tool) {
            bail!("`{tool}` is missing: packaging needs a Debian system (apt-get install dpkg)");
        }
    }
    let binary = match binary {
        Some(b) => b,
        None => {
            status(cargo().args(["build", "--release", "--bin", "sonde"]))?;
            target_dir().join("release/sonde")
        }
    };
    if !binary.is_file() {
        bail!("no binary at {}", binary.display());
    }
    let version = version()?;
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    let out_dir = target_dir().join("debian");
    let stage = out_dir.join(format!("sonde_{version}_{arch}"));
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    eprintln!("xtask: package: staging {}", stage.display());
    let repo = root();

    let bin = stage.join("usr/bin/sonde");
    copy(&binary, &bin, 0o755)?;
    if have("strip") {
        status(Command::new("strip").arg("--strip-unneeded").arg(&bin))?;
    }
    let mut conffiles = String::new();
    for c in CONFIGS {
        copy(
            &repo.join(format!("config/{c}.toml")),
            &stage.join(format!("etc/sonde/{c}.toml")),
            0o644,
        )?;
        conffiles += &format!("/etc/sonde/{c}.toml\n");
    }
    for entry in std::fs::read_dir(repo.join("packaging/systemd"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "service") {
            let name = path.file_name().expect("a file");
            copy(&path, &stage.join("lib/systemd/system").join(name), 0o644)?;
        }
    }
    let doc = stage.join("usr/share/doc/sonde");
    copy(&repo.join("README.md"), &doc.join("README.md"), 0o644)?;
    for entry in std::fs::read_dir(repo.join("docs"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "md") {
            let name = path.file_name().expect("a file");
            copy(&path, &doc.join("docs").join(name), 0o644)?;
        }
    }
    write(&doc.join("copyright"), &copyright()?, 0o644)?;
    let changelog = doc.join("changelog.Debian");
    write(&changelog, &changelog_entry(&version)?, 0o644)?;
    status(Command::new("gzip").args(["-9n", "-f"]).arg(&changelog))?;

    let debian = stage.join("DEBIAN");
    for script in ["postinst", "prerm", "postrm"] {
        copy(
            &repo.join("packaging/debian").join(script),
            &debian.join(script),
            0o755,
        )?;
    }
    write(&debian.join("conffiles"), &conffiles, 0o644)?;
    let control = format!(
        "Package: sonde\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {}\n\
         Depends: {}, adduser\n\
         Section: admin\n\
         Priority: optional\n\
         Description: eBPF-first Linux kernel telemetry agent\n \
         Sonde loads eBPF programs and reads procfs to measure the scheduler,\n \
         syscalls, block I/O, TCP, the network stack, cgroups and processes,\n \
         and serves them as Prometheus metrics and msgpack snapshots. Also:\n \
         an exporter relaying agents with percentiles, a remote-write pusher with an\n \
         on-disk spool, and a rolling flight recorder. systemd units included.\n",
        installed_kib(&stage)?,
        depends(&bin)?,
    );
    write(&debian.join("control"), &control, 0o644)?;

    let deb = out_dir.join(format!("sonde_{version}_{arch}.deb"));
    status(
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group", "-Zxz"])
            .arg(&stage)
            .arg(&deb),
    )?;
    if have("lintian") {
        // Advice, not a gate: lintian is not required to build.
        let _ = status(
            Command::new("lintian")
                .arg("--no-tag-display-limit")
                .arg(&deb),
        );
    }
    Ok(deb)
}

/// `version` of the root package in Cargo.toml.
fn version() -> Result<String> {
    let toml = std::fs::read_to_string(root().join("Cargo.toml"))?;
    let mut in_package = false;
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if let Some(v) = line.strip_prefix("version") {
            if in_package {
                let v = v.trim_start().trim_start_matches('=').trim();
                return Ok(v.trim_matches('"').to_string());
            }
        }
    }
    bail!("no [package] version in Cargo.toml")
}

/// Shared-library dependencies with minimum versions, as debhelper computes
/// them (dpkg-shlibdeps); without dpkg-dev, the packages owning the
/// libraries `ldd` lists, unversioned.
fn depends(bin: &Path) -> Result<String> {
    if have("dpkg-shlibdeps") {
        let dir = tempdir()?;
        std::fs::create_dir_all(dir.join("debian"))?;
        std::fs::write(
            dir.join("debian/control"),
            "Source: sonde\n\nPackage: sonde\nArchitecture: any\n",
        )?;
        let out = Command::new("dpkg-shlibdeps")
            .arg("-O")
            .arg(format!("-e{}", bin.display()))
            .current_dir(&dir)
            .output()?;
        let _ = std::fs::remove_dir_all(&dir);
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(d) = text.lines().find_map(|l| l.strip_prefix("shlibs:Depends=")) {
            if out.status.success() {
                return Ok(d.trim().to_string());
            }
        }
    }
    let ldd = output(Command::new("ldd").arg(bin))?;
    let mut packages: Vec<String> = Vec::new();
    for lib in ldd.lines().filter_map(|l| l.split("=> ").nth(1)) {
        let path = lib.split(" (").next().unwrap_or("").trim();
        if path.is_empty() {
            continue;
        }
        let owner = output(Command::new("dpkg").args(["-S", path]))
            .or_else(|_| {
                // usrmerge: dpkg knows /lib/... while ldd says /usr/lib/... or back.
                let other = path
                    .strip_prefix("/usr")
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("/usr{path}"));
                output(Command::new("dpkg").args(["-S", &other]))
            })
            .with_context(|| format!("which package holds {path}?"))?;
        let name = owner.split(':').next().unwrap_or("").trim().to_string();
        if !packages.contains(&name) {
            packages.push(name);
        }
    }
    Ok(packages.join(", "))
}

fn copyright() -> Result<String> {
    let mit = std::fs::read_to_string(root().join("LICENSE-MIT"))?;
    let holder = mit
        .lines()
        .find(|l| l.starts_with("Copyright"))
        .unwrap_or("Copyright (c) The Sonde authors");
    let indented: String = mit
        .lines()
        .skip_while(|l| !l.starts_with("Permission"))
        .map(|l| {
            if l.is_empty() {
                " .\n".to_string()
            } else {
                format!(" {l}\n")
            }
        })
        .collect();
    Ok(format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: sonde\n\n\
         Files: *\n\
         Copyright: {}\n\
         License: MIT or Apache-2.0\n\n\
         License: MIT\n{indented}\n\
         License: Apache-2.0\n \
         On Debian systems, the complete text of the Apache License 2.0 can be\n \
         found in /usr/share/common-licenses/Apache-2.0.\n",
        holder
            .trim_start_matches("Copyright")
            .trim_start_matches(" (c)")
            .trim()
    ))
}

/// One changelog entry naming the commit, dated by it (reproducible).
fn changelog_entry(version: &str) -> Result<String> {
    let git = |fmt: &str| {
        output(
            Command::new("git")
                .args(["log", "-1", &format!("--format={fmt}")])
                .current_dir(root()),
        )
    };
    let (commit, date) = match (git("%h"), git("%aD")) {
        (Ok(c), Ok(d)) => (format!("commit {c}"), d),
        _ => (
            "a source tree".to_string(),
            output(Command::new("date").arg("-R"))?,
        ),
    };
    Ok(format!(
        "sonde ({version}) unstable; urgency=medium\n\n  * Built from {commit}.\n\n -- {MAINTAINER}  {date}\n"
    ))
}

fn installed_kib(dir: &Path) -> Result<u64> {
    fn walk(p: &Path, total: &mut u64) -> Result<()> {
        for e in std::fs::read_dir(p)? {
            let e = e?;
            let meta = e.metadata()?;
            if meta.is_dir() {
                if e.file_name() != "DEBIAN" {
                    walk(&e.path(), total)?;
                }
            } else {
                *total += meta.len().div_ceil(1024);
            }
        }
        Ok(())
    }
    let mut total = 0;
    walk(dir, &mut total)?;
    Ok(total)
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    std::fs::create_dir_all(to.parent().expect("a parent"))?;
    std::fs::copy(from, to).with_context(|| format!("cannot copy {}", from.display()))?;
    chmod(to, mode)
}

fn write(to: &Path, text: &str, mode: u32) -> Result<()> {
    std::fs::create_dir_all(to.parent().expect("a parent"))?;
    std::fs::write(to, text)?;
    chmod(to, mode)
}

fn chmod(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn tempdir() -> Result<PathBuf> {
    let dir = target_dir().join(format!("debian/tmp-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs `cmd`, fails unless it succeeds, and returns its trimmed stdout.
fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The test suite's package step: build, `dpkg -i`, check every installed
/// config and unit, then `dpkg --purge` and check nothing is left. Refuses
/// to run over an installed `sonde` package or an existing `sonde` user.
pub fn install_check() -> Result<()> {
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", "sonde"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty() && o.stdout != b"not-installed");
    if installed {
        bail!("package: a `sonde` package is already installed on this machine; the install/purge test would replace and then purge it (with /var/lib/sonde). Remove it first: dpkg --purge sonde");
    }
    if user_exists("sonde") {
        bail!("package: a `sonde` user exists without the package; purging the test install would delete it. Remove it first or run elsewhere");
    }
    eprintln!("xtask: package: building");
    let deb = build(None)?;
    eprintln!("xtask: package: dpkg -i {}", deb.display());
    let installed = status(Command::new("dpkg").arg("-i").arg(&deb));
    // Purged even when the install failed half-way: a half-configured
    // package would block every later run.
    let checked = installed.and_then(|()| installed_checks());
    eprintln!("xtask: package: dpkg --purge sonde");
    let purged = status(Command::new("dpkg").args(["--purge", "sonde"]));
    checked?;
    purged?;
    let mut left: Vec<String> = [
        "/usr/bin/sonde",
        "/etc/sonde",
        "/var/lib/sonde",
        "/usr/share/doc/sonde",
        "/lib/systemd/system/sonde.service",
        "/lib/systemd/system/sonde-exporter.service",
        "/lib/systemd/system/sonde-push.service",
        "/lib/systemd/system/sonde-hindsight.service",
        "/etc/systemd/system/multi-user.target.wants/sonde.service",
    ]
    .into_iter()
    .filter(|p| Path::new(p).symlink_metadata().is_ok())
    .map(str::to_string)
    .collect();
    if user_exists("sonde") {
        left.push("user sonde".into());
    }
    if output(Command::new("getent").args(["group", "sonde"])).is_ok() {
        left.push("group sonde".into());
    }
    if !left.is_empty() {
        bail!("package: purge left {}", left.join(", "));
    }
    eprintln!("xtask: package: installed, checked and purged cleanly");
    Ok(())
}

fn installed_checks() -> Result<()> {
    // The README's links into docs/ resolve in the installed copy.
    let readme = std::fs::read_to_string("/usr/share/doc/sonde/README.md")?;
    for link in readme.split("](docs/").skip(1) {
        let file = link.split([')', '#']).next().unwrap_or_default();
        let path = format!("/usr/share/doc/sonde/docs/{file}");
        if !Path::new(&path).is_file() {
            bail!("package: the README links docs/{file}, which is not installed");
        }
    }
    for c in CONFIGS {
        let path = format!("/etc/sonde/{c}.toml");
        eprintln!("xtask: package: sonde check {path}");
        status(Command::new("/usr/bin/sonde").args(["check", &path]))?;
    }
    let conffiles = output(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "sonde"]))?;
    for c in CONFIGS {
        if !conffiles.contains(&format!("/etc/sonde/{c}.toml")) {
            bail!("package: /etc/sonde/{c}.toml is not a conffile: {conffiles}");
        }
    }
    let id = output(Command::new("id").arg("sonde"))?;
    eprintln!("xtask: package: {id}");
    let home = output(Command::new("getent").args(["passwd", "sonde"]))?;
    if !home.ends_with(":/var/lib/sonde:/usr/sbin/nologin") {
        bail!("package: unexpected sonde user: {home}");
    }
    let mut verify = Command::new("systemd-analyze");
    verify.arg("verify");
    for u in ["sonde", "sonde-exporter", "sonde-push", "sonde-hindsight"] {
        verify.arg(format!("/lib/systemd/system/{u}.service"));
    }
    eprintln!("xtask: package: systemd-analyze verify the installed units");
    let out = verify.output().context("cannot run systemd-analyze")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !said.trim().is_empty() {
        bail!("package: systemd-analyze verify: {said}");
    }
    Ok(())
}

fn user_exists(name: &str) -> bool {
    output(Command::new("getent").args(["passwd", name])).is_ok()
}
