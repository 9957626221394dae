//! A throwaway PKI made with the real `openssl` command, and `curl` as the
//! TLS client: the tools operators use, not a library's test helpers.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::tool;

/// A CA with a server certificate for 127.0.0.1 and a client certificate.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// Makes `ca`, `server` and `client` (`<name>.pem`, `<name>.key`) in
    /// `dir`; `tag` keeps two CAs in one directory apart.
    pub fn new(dir: &Path, tag: &str) -> Pki {
        let dir = dir.join(format!("pki-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki { dir };
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            &format!("/CN=sonde test CA {tag}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        pki.leaf(
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
        pki.leaf("client", "extendedKeyUsage=clientAuth\n");
        pki
    }

    fn leaf(&self, name: &str, ext: &str) {
        std::fs::write(self.dir.join(format!("{name}.ext")), ext).unwrap();
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new(tool("openssl"))
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_string()
    }
}

/// What `curl` got: the HTTP status (0 when no response) and its body.
pub struct Curl {
    pub status: u16,
    pub body: String,
    pub ok: bool,
    pub stderr: String,
}

/// Runs `curl -sS` with `args` and the URL; never panics on failure.
pub fn curl(url: &str, args: &[&str]) -> Curl {
    let out = Command::new(tool("curl"))
        .args(["-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    Curl {
        status: code.trim().parse().unwrap_or(0),
        body: body.to_string(),
        ok: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The bcrypt hash `htpasswd -nbBC 10 USER PASSWORD` prints (after the
/// colon): what users put in `basic_auth_users`.
pub fn htpasswd(user: &str, password: &str) -> String {
    let out = Command::new(tool("htpasswd"))
        .args(["-nbBC", "10", user, password])
        .output()
        .unwrap();
    assert!(out.status.success(), "htpasswd failed");
    let line = String::from_utf8(out.stdout).unwrap();
    line.trim().split_once(':').unwrap().1.to_string()
}
