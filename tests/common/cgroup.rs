//! A real cgroup for a test: made in every hierarchy the cgroup sampler
//! reads (v1 controllers plus the unified mount on a hybrid host, or the
//! cgroup2 root), workloads moved into it before they exec, removed on
//! drop once its tasks have left.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The hierarchies a test cgroup is made in.
pub fn hierarchies() -> Vec<PathBuf> {
    let base = PathBuf::from("/sys/fs/cgroup");
    if base.join("cpu").is_dir() || base.join("cpu,cpuacct").is_dir() {
        let mut v: Vec<PathBuf> = [
            "cpu",
            "cpuacct",
            "cpu,cpuacct",
            "memory",
            "blkio",
            "unified",
        ]
        .iter()
        .map(|c| base.join(c))
        .filter(|p| p.is_dir() && !p.is_symlink())
        .collect();
        v.dedup();
        v
    } else {
        vec![base]
    }
}

pub struct TestCgroup {
    /// Its path below each hierarchy's root, e.g. `/sondetest1.slice/x`.
    pub path: String,
    pub dirs: Vec<PathBuf>,
}

impl TestCgroup {
    pub fn new(path: &str) -> TestCgroup {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var("CI").is_err(),
                "cgroup tests need root (CI=true)"
            );
        }
        let dirs: Vec<PathBuf> = hierarchies()
            .into_iter()
            .map(|h| h.join(path.trim_start_matches('/')))
            .collect();
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        TestCgroup {
            path: path.to_string(),
            dirs,
        }
    }

    /// A command that moves itself into this cgroup before it execs.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args);
        let procs: Vec<PathBuf> = self.dirs.iter().map(|d| d.join("cgroup.procs")).collect();
        super::join_cgroups_before_exec(&mut c, &procs);
        c
    }

    /// File `name` of the hierarchy whose path contains `controller_dir`
    /// (the first hierarchy when none does).
    pub fn file(&self, controller_dir: &str, name: &str) -> String {
        let d = self
            .dirs
            .iter()
            .find(|d| d.to_str().unwrap().contains(controller_dir))
            .unwrap_or(&self.dirs[0]);
        std::fs::read_to_string(d.join(name)).unwrap()
    }

    /// Limits the cgroup to 20 % of a CPU, so a CPU-bound task in it is
    /// throttled.
    pub fn limit_cpu(&self) {
        for d in &self.dirs {
            let (file, value) = if d.join("cpu.max").exists() {
                ("cpu.max", "20000 100000")
            } else if d.join("cpu.cfs_quota_us").exists() {
                ("cpu.cfs_quota_us", "20000")
            } else {
                continue;
            };
            std::fs::write(d.join(file), value)
                .unwrap_or_else(|e| panic!("{}/{file}: {e}", d.display()));
            return;
        }
        panic!("no CPU quota file in {:?}", self.dirs);
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Parents made by create_dir_all are left: they are shared by the
        // tests' cgroups and empty. Killed tasks leave a moment after they
        // die, so an rmdir is retried for up to 5 s.
        for d in self.dirs.iter().rev() {
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
