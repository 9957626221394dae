//! The kernels to boot: Debian's cloud kernel packages by series (what apt
//! serves, newest first), downloaded and unpacked, or an image given by
//! path.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::Kernel;
use crate::status;

/// The `<major>.<minor>` series of Debian's cloud kernels the registry
/// serves, oldest first.
pub(super) fn series_served() -> Result<Vec<String>> {
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
pub(super) fn series_of(package: &str) -> Option<String> {
    let version = package.strip_prefix("linux-image-")?;
    let mut parts = version.split(['.', '-', '+']);
    let major = parts.next()?;
    let minor = parts.next()?;
    (major.chars().all(|c| c.is_ascii_digit()) && minor.chars().all(|c| c.is_ascii_digit()))
        .then(|| format!("{major}.{minor}"))
}

/// Names of the installable `linux-image-*-cloud-amd64-unsigned` packages.
pub(super) fn cloud_packages() -> Result<Vec<String>> {
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
pub(super) fn natural_key(s: &str) -> Vec<(u64, String)> {
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

pub(super) fn resolve(spec: &str, dir: &Path) -> Result<Kernel> {
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
pub(super) fn extract(package: &str, dir: &Path) -> Result<Kernel> {
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
}
