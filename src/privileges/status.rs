//! The credential lines of /proc/PID/status and /proc/self/task/TID/status.

/// The credential lines of a /proc status file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Status {
    pub eff: u64,
    pub prm: u64,
    pub inh: u64,
    pub bnd: u64,
    pub amb: u64,
    pub nnp: bool,
    /// Real, effective, saved, filesystem.
    pub uid: [u32; 4],
    pub gid: [u32; 4],
}

pub fn read_status(path: &str) -> anyhow::Result<Status> {
    Ok(parse_status(&std::fs::read_to_string(path)?))
}

pub fn parse_status(text: &str) -> Status {
    let mut s = Status::default();
    let hex = |v: &str| u64::from_str_radix(v.trim(), 16).unwrap_or(0);
    let ids = |v: &str| {
        let mut out = [0u32; 4];
        for (o, f) in out.iter_mut().zip(v.split_whitespace()) {
            *o = f.parse().unwrap_or(0);
        }
        out
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k {
            "CapEff" => s.eff = hex(v),
            "CapPrm" => s.prm = hex(v),
            "CapInh" => s.inh = hex(v),
            "CapBnd" => s.bnd = hex(v),
            "CapAmb" => s.amb = hex(v),
            "NoNewPrivs" => s.nnp = v.trim() == "1",
            "Uid" => s.uid = ids(v),
            "Gid" => s.gid = ids(v),
            _ => {}
        }
    }
    s
}
