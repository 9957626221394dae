//! `cargo xtask`: the project's setup, test and formatting commands.
//!
//!   cargo xtask run    install build dependencies, build release, run the agent
//!   cargo xtask test   install test dependencies, check formatting and lints,
//!                      run the whole test suite
//!   cargo xtask fmt    rustfmt and clang-format
//!   cargo xtask bench  measure Sonde side by side with node_exporter
//!   cargo xtask kernels  prove every sampler on other kernels, under QEMU
//!   cargo xtask package  build the Debian package

mod bench;
mod kernels;
mod package;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

/// Debian packages the build needs: the eBPF toolchain and libbpf's C deps.
const BUILD_PACKAGES: &[&str] = &[
    "clang",
    "llvm",
    "libelf-dev",
    "zlib1g-dev",
    "pkg-config",
    "clang-format",
];
/// Debian packages the tests need besides: a real Prometheus and promtool;
/// a real dockerd and a static busybox to run in it (tests/docker.rs);
/// openssl, curl and htpasswd for TLS and auth (tests/security.rs);
/// systemd for `systemd-analyze verify` of the units (tests/systemd.rs and
/// the package step); adduser, which the package depends on; chromium,
/// the browser `sonde view` is tested in (tests/view.rs); victoria-metrics,
/// a fleet store the pusher and the exporter are tested against
/// (tests/victoria.rs).
const TEST_PACKAGES: &[&str] = &[
    "prometheus",
    "docker.io",
    "busybox-static",
    "openssl",
    "curl",
    "apache2-utils",
    "systemd",
    "adduser",
    "chromium",
    "victoria-metrics",
];

const USAGE: &str = "usage: cargo xtask <command>

commands:
  run [ARGS...]   install missing build dependencies (apt), build release and run
                  the agent with config/agent.toml (through sudo when not root);
                  ARGS are passed to sonde, e.g. `cargo xtask run -- --once`
  test            install missing build and test dependencies (apt, including
                  Debian's prometheus), check formatting and clippy, run all tests,
                  then the kernel matrix for Debian 12's 6.1 (`kernels 6.1`),
                  then (as root) builds the Debian package, installs it with
                  dpkg -i, checks it and purges it
  fmt             format Rust (rustfmt) and BPF C (clang-format)
  bench [--quick] [--only recorder]
                  as root: scrape cost, memory and startup of the agent and of
                  node_exporter side by side, the flight recorder's cost,
                  per-event overhead (agent off vs on), micro-benchmarks;
                  prints a markdown table and writes target/bench/report.md,
                  and (full runs only) its tables into docs/performance.md
                  between the bench markers (~25 minutes; --quick ~8;
                  --only recorder: startup and the recorder, 1 minute)
  kernels [KERNEL...] [--accel tcg|kvm]
                  as root: boot each kernel under QEMU (default: this host's,
                  natively, and every Debian kernel series apt serves), run the
                  agent inside with driven workloads and print the kernel x
                  sampler matrix (the default set also writes it into
                  docs/kernels.md); `cargo xtask kernels --help` for details
  package [--binary PATH] [--install-check]
                  build the Debian package target/debian/sonde_VERSION_ARCH.deb
                  (release build unless --binary names one; dpkg-deb, no
                  downloads): binary, /etc/sonde/*.toml conffiles, systemd
                  units, the `sonde` system user, docs; --install-check: as
                  root, also dpkg -i it, check it and purge it (the step
                  `cargo xtask test` ends with)
  vmlinux [--btf FILE] [--arch ARCH]
                  regenerate bpf/include/ARCH/vmlinux.h with bpftool from the
                  kernel BTF in FILE (default /sys/kernel/btf/vmlinux, this
                  machine's arch); ARCH is x86_64 or aarch64";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("fmt") => fmt(),
        Some("bench") => bench::bench(&args[1..]),
        Some("kernels") => kernels::kernels(&args[1..]),
        Some("package") => package::package(&args[1..]),
        Some("vmlinux") => vmlinux(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown command `{other}`\n\n{USAGE}")),
        None => Err(anyhow::anyhow!("{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Where cargo puts its output (`CARGO_TARGET_DIR` or `target/`): the
/// release binary the bench, the kernel matrix and `run` start is there.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root().join(p) })
        .unwrap_or_else(|| root().join("target"))
}

fn status(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: $ {}", shown.replace('"', ""));
    let st = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !st.success() {
        bail!("{shown} failed ({st})");
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn have(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false)
}

/// Installs the Debian packages of `packages` that are missing, with apt
/// as root or through sudo; otherwise says what to install.
fn ensure_packages(packages: &[&str]) -> Result<()> {
    if !have("dpkg-query") {
        eprintln!(
            "xtask: not a Debian/Ubuntu system; make sure these are installed: {}",
            packages.join(" ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${db:Status-Status}", p])
                .output();
            !matches!(out, Ok(o) if o.status.success() && o.stdout == b"installed")
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing missing packages: {}", missing.join(" "));
    let sudo: &[&str] = if is_root() {
        &[]
    } else if have("sudo") {
        &["sudo"]
    } else {
        bail!(
            "missing packages: {}; run as root or install them: apt-get install {}",
            missing.join(" "),
            missing.join(" ")
        );
    };
    let apt = |args: &[&str]| {
        let mut argv: Vec<&str> = sudo.to_vec();
        argv.push("apt-get");
        argv.extend_from_slice(args);
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        status(&mut c)
    };
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)
}

fn run(args: &[String]) -> Result<()> {
    ensure_packages(BUILD_PACKAGES)?;
    status(cargo().args(["build", "--release", "--bin", "sonde"]))?;
    let bin = target_dir().join("release/sonde");
    let config = root().join("config/agent.toml");
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--")
        .collect();
    let mut cmd = if is_root() {
        Command::new(&bin)
    } else {
        eprintln!("xtask: the agent loads eBPF programs and needs root; re-running through sudo");
        let mut c = Command::new("sudo");
        c.arg(&bin);
        c
    };
    cmd.args(&args).arg(&config);
    status(&mut cmd)
}

fn test(args: &[String]) -> Result<()> {
    let mut packages = BUILD_PACKAGES.to_vec();
    packages.extend(TEST_PACKAGES);
    ensure_packages(&packages)?;
    status(cargo().args(["fmt", "--all", "--", "--check"]))
        .context("formatting differs: run `cargo xtask fmt`")?;
    let mut c = Vec::new();
    collect_c(&root().join("bpf"), &mut c)?;
    collect_c(&root().join("xtask/kernels"), &mut c)?;
    status(
        Command::new("clang-format")
            .args(["--dry-run", "-Werror"])
            .args(&c),
    )
    .context("BPF C formatting differs: run `cargo xtask fmt`")?;
    status(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    ensure_pyarrow()?;
    ensure_python_pins()?;
    let mut t = cargo();
    t.args(["test", "--workspace"]).args(args);
    status(&mut t)?;
    // Every BPF sampler on Debian 12's kernel too, under QEMU (~1 minute
    // once the packages are there); not when only some tests were asked.
    let ci = std::env::var("CI").as_deref() == Ok("true");
    if !args.is_empty() {
        return Ok(());
    }
    kernel_matrix(ci)?;
    package_step(ci)
}

/// The Debian package installed, checked and purged for real: `dpkg -i`
/// needs root, and the machine must not already have a `sonde` package.
fn package_step(ci: bool) -> Result<()> {
    if is_root() && have("dpkg") {
        package::install_check()
    } else if ci {
        bail!("the package install test needs root and dpkg (CI=true)")
    } else {
        eprintln!("xtask: SKIPPED the package install test (dpkg -i, dpkg --purge): it needs root and dpkg");
        Ok(())
    }
}

fn kernel_matrix(ci: bool) -> Result<()> {
    if !ci && !kernels::series_available("6.1") {
        eprintln!("xtask: SKIPPED the kernel matrix: apt serves no Debian 6.1 cloud kernel here");
        Ok(())
    } else if is_root() {
        kernels::kernels(&["6.1".to_string()])
    } else if ci {
        bail!("the kernel matrix needs root (CI=true)")
    } else {
        eprintln!("xtask: SKIPPED the kernel matrix (cargo xtask kernels 6.1): it needs root");
        Ok(())
    }
}

/// The recorder tests read our parquet files with pyarrow, as users do.
fn ensure_pyarrow() -> Result<()> {
    let have = Command::new("python3")
        .args(["-c", "import pyarrow"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if have {
        return Ok(());
    }
    status(Command::new("python3").args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--root-user-action=ignore",
        "pyarrow",
    ]))
    .context("cannot install pyarrow (python3 -m pip install pyarrow)")
}

/// Python packages the tests drive Sonde with, pinned: the official MCP
/// Python SDK and jsonschema for its Draft 2020-12 validation
/// (tests/mcp_client.py; the SDK's attribute names differ between major
/// versions: 1.x `structuredContent`, 2.x `structured_content`), and
/// Playwright, which drives Debian's Chromium for tests/view_browser.py
/// (it downloads no browser: the test names /usr/bin/chromium).
const PYTHON_PINS: &[(&str, &str)] = &[
    ("mcp", "2.3.0"),
    ("jsonschema", "4.26.0"),
    ("playwright", "1.65.2"),
];

/// Installs PYTHON_PINS unless exactly those versions are there.
fn ensure_python_pins() -> Result<()> {
    let same = PYTHON_PINS
        .iter()
        .map(|(p, v)| format!("m.version('{p}') == '{v}'"))
        .collect::<Vec<_>>()
        .join(" and ");
    let have = Command::new("python3")
        .args([
            "-c",
            &format!("import sys, importlib.metadata as m, mcp, jsonschema, playwright; sys.exit(0 if {same} else 1)"),
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if have {
        return Ok(());
    }
    let pins: Vec<String> = PYTHON_PINS
        .iter()
        .map(|(p, v)| format!("{p}=={v}"))
        .collect();
    status(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--root-user-action=ignore",
            ])
            .args(&pins),
    )
    .with_context(|| format!("cannot install {} (python3 -m pip install)", pins.join(" ")))
}

fn vmlinux(args: &[String]) -> Result<()> {
    let mut btf = "/sys/kernel/btf/vmlinux".to_string();
    let mut arch = std::env::consts::ARCH.to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--btf" => btf = it.next().context("--btf needs a file")?.clone(),
            "--arch" => arch = it.next().context("--arch needs x86_64 or aarch64")?.clone(),
            other => bail!("unknown argument `{other}`\n\n{USAGE}"),
        }
    }
    if !["x86_64", "aarch64"].contains(&arch.as_str()) {
        bail!("unsupported arch `{arch}`: x86_64 or aarch64");
    }
    ensure_packages(&["bpftool"])?;
    let out = Command::new("bpftool")
        .args(["btf", "dump", "file", &btf, "format", "c"])
        .output()
        .context("cannot run bpftool")?;
    if !out.status.success() {
        bail!("bpftool failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let dir = root().join("bpf/include").join(&arch);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("vmlinux.h");
    std::fs::write(&path, &out.stdout)?;
    eprintln!(
        "xtask: wrote {} ({} bytes) from {btf}",
        path.display(),
        out.stdout.len()
    );
    Ok(())
}

fn fmt() -> Result<()> {
    status(cargo().args(["fmt", "--all"]))?;
    let mut files = Vec::new();
    collect_c(&root().join("bpf"), &mut files)?;
    collect_c(&root().join("xtask/kernels"), &mut files)?;
    if files.is_empty() {
        return Ok(());
    }
    if !have("clang-format") {
        bail!("clang-format is not installed (apt-get install clang-format)");
    }
    status(Command::new("clang-format").arg("-i").args(&files))
}

/// Replaces what lies between the lines `<!-- NAME:start -->` and
/// `<!-- NAME:end -->` of `doc` (relative to the repository) with
/// `content`: how the bench and the kernel matrix keep their tables in
/// docs/ current. A missing marker is an error, not a silent no-op.
pub fn write_region(doc: &str, name: &str, content: &str) -> Result<()> {
    let path = root().join(doc);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {doc}"))?;
    let text = replace_region(&text, name, content).with_context(|| format!("in {doc}"))?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {doc}"))?;
    eprintln!("xtask: updated the {name} tables of {doc}");
    Ok(())
}

fn replace_region(text: &str, name: &str, content: &str) -> Result<String> {
    let start = format!("<!-- {name}:start -->\n");
    let end = format!("<!-- {name}:end -->");
    let a = text
        .find(&start)
        .with_context(|| format!("no `{}` line", start.trim_end()))?
        + start.len();
    let b = a + text[a..]
        .find(&end)
        .with_context(|| format!("no `{end}` line after the start"))?;
    let mut body = content.trim_end().to_string();
    body.push('\n');
    Ok(format!("{}{body}{}", &text[..a], &text[b..]))
}

/// BPF C sources and headers, except generated vmlinux headers.
fn collect_c(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries {
        let path = e?.path();
        if path.is_dir() {
            collect_c(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "c" || x == "h")
            && !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinux"))
        {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::root;

    /// The README's two set-up commands are the ones CI and newcomers run.
    #[test]
    fn readme_and_ci_agree_on_the_setup_commands() {
        let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
        let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
        assert!(
            readme.contains("```sh\ncargo xtask run\n```"),
            "README lacks `cargo xtask run`"
        );
        assert!(
            readme.contains("```sh\ncargo xtask test\n```"),
            "README lacks `cargo xtask test`"
        );
        assert!(
            ci.lines().any(|l| l.trim() == "cargo xtask test"),
            ".ci/run must call `cargo xtask test`"
        );
    }

    #[test]
    fn regions_between_markers_are_replaced_whole() {
        let doc = "# Title\n<!-- t:start -->\nold\ntable\n<!-- t:end -->\nafter\n";
        let new = super::replace_region(doc, "t", "| a |\n").unwrap();
        assert_eq!(
            new,
            "# Title\n<!-- t:start -->\n| a |\n<!-- t:end -->\nafter\n"
        );
        assert!(super::replace_region(doc, "u", "x").is_err());
        assert!(super::replace_region("<!-- t:start -->\nno end\n", "t", "x").is_err());
        // The regions the bench and the kernel matrix write exist.
        for (doc, name) in [
            ("docs/performance.md", "bench"),
            ("docs/kernels.md", "kernels"),
        ] {
            let text = std::fs::read_to_string(root().join(doc)).unwrap();
            super::replace_region(&text, name, "x").unwrap();
        }
    }

    #[test]
    fn finds_bpf_sources_but_not_vmlinux_headers() {
        let dir = std::env::temp_dir().join(format!("xtask-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("include")).unwrap();
        for f in ["a.bpf.c", "include/h.h", "include/vmlinux.h", "README.md"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let mut found = Vec::new();
        super::collect_c(&dir, &mut found).unwrap();
        found.sort();
        assert_eq!(found, vec![dir.join("a.bpf.c"), dir.join("include/h.h")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
