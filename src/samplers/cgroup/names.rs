//! What a cgroup's path alone says about what runs in it: the container id
//! and runtime, the Kubernetes pod uid, an LXC/QEMU guest's name, or the
//! systemd unit. Pure string work, no I/O: names the path cannot give (a
//! Docker container's name and image, a pod's name and namespace) come from
//! the runtime's API (`docker.rs`), and a label the path does not carry is
//! absent, never made up.
//!
//! Path shapes recognised (the path from the hierarchy's root, as in
//! `/proc/<pid>/cgroup`), with the runtimes' own spellings, as cAdvisor's and
//! coroot-node-agent's matchers and their fixtures show them:
//!
//! | shape | runtime |
//! | --- | --- |
//! | `.../docker-<id>.scope`, `/docker/<id>` | docker |
//! | `.../cri-containerd-<id>.scope`, `...slice:cri-containerd:<id>` | containerd |
//! | `.../crio-<id>.scope`, `.../crio-<id>` | cri-o |
//! | `.../libpod-<id>.scope[/container]`, `/libpod_parent/libpod-<id>` | podman |
//! | `/kubepods/<qos>/pod<uid>/<id>` (cgroupfs driver, runtime not in the path) | — |
//! | `/lxc/<name>`, `/lxc.payload.<name>`, `/lxc.payload/<name>`, `/lxc.monitor.<name>` | lxc |
//! | `/qemu.slice/<vmid>.scope`, `/machine.slice/machine-qemu\x2d<n>\x2d<name>.scope` | qemu |
//! | any other `*.service`, `*.scope`, `*.slice`, ... | systemd |
//!
//! The deepest component that identifies something wins, and the
//! components under it inherit it (`.../libpod-<id>.scope/container`,
//! `.../machine-qemu...scope/libvirt/vcpu0`); systemd units inside a
//! container or guest (`/lxc/100/ns/init.scope`) do not replace it. The
//! pod uid is taken from any depth of a `kubepods` tree. A container id is
//! exactly 64 lowercase hex digits, as every runtime here writes it; a
//! shorter or longer run is not an id.

/// Labels known from a cgroup path. `Default` is "nothing known".
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Labels {
    /// Full 64-hex container id, where the path has one.
    pub container_id: Option<String>,
    /// Container (LXC/QEMU guest) name or systemd unit name, when the path
    /// says it.
    pub name: Option<String>,
    /// Never known from a path; filled from the runtime's API.
    pub image: Option<String>,
    /// Kubernetes pod uid (dashed) from a `kubepods` path.
    pub pod: Option<String>,
    /// Never known from a path; filled from the runtime's API.
    pub namespace: Option<String>,
    /// "docker" | "containerd" | "cri-o" | "podman" | "lxc" | "qemu" | "systemd".
    pub runtime: Option<&'static str>,
}

/// What one path component identifies.
struct Ident {
    container_id: Option<String>,
    name: Option<String>,
    runtime: Option<&'static str>,
}

impl Ident {
    fn container(id: &str, runtime: Option<&'static str>) -> Option<Ident> {
        Some(Ident {
            container_id: Some(id.to_string()),
            name: None,
            runtime,
        })
    }

    fn named(name: &str, runtime: &'static str) -> Option<Ident> {
        (!name.is_empty()).then(|| Ident {
            container_id: None,
            name: Some(name.to_string()),
            runtime: Some(runtime),
        })
    }

    fn runtime_only(runtime: &'static str) -> Option<Ident> {
        Some(Ident {
            container_id: None,
            name: None,
            runtime: Some(runtime),
        })
    }
}

/// The labels a cgroup path carries; see the module docs for the shapes.
pub fn from_path(path: &str) -> Labels {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let kube = parts.iter().any(|p| p.contains("kubepods"));
    let mut labels = Labels::default();
    let mut ident: Option<Ident> = None;
    for (i, part) in parts.iter().enumerate() {
        let parent = i.checked_sub(1).map(|j| parts[j]);
        if kube {
            // `pod<uid>.slice:cri-containerd:<id>` names the pod first.
            let slice = part.split(':').next().unwrap_or(part);
            if let Some(uid) = pod_uid(slice) {
                labels.pod = Some(uid);
            }
        }
        if let Some(found) = component(part, parent, i, kube) {
            // A container or guest is named by itself, not by the systemd
            // units inside it (`/lxc.payload.first/init.scope` is guest
            // `first`); a container inside one (docker in docker) is.
            let inside_guest = ident.as_ref().is_some_and(|d| d.runtime != Some("systemd"));
            if !(inside_guest && found.runtime == Some("systemd")) {
                ident = Some(found);
            }
        }
    }
    if let Some(ident) = ident {
        labels.container_id = ident.container_id;
        labels.name = ident.name;
        labels.runtime = ident.runtime;
    }
    labels
}

/// What component `part` (at depth `i`, under `parent`) identifies.
fn component(part: &str, parent: Option<&str>, i: usize, kube: bool) -> Option<Ident> {
    // Container scopes of the runtimes' systemd drivers, and podman's
    // cgroupfs `libpod-<id>`. A conmon scope (`crio-conmon-<id>.scope`,
    // `libpod-conmon-<id>.scope`) is the runtime's monitor, not the
    // container: it falls through to a systemd unit.
    let unscoped = part.strip_suffix(".scope").unwrap_or(part);
    for (prefix, runtime) in [
        ("docker-", "docker"),
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
        ("libpod-", "podman"),
    ] {
        if let Some(id) = unscoped
            .strip_prefix(prefix)
            .filter(|id| is_container_id(id))
        {
            return Ident::container(id, Some(runtime));
        }
    }
    // runc's systemd cgroup syntax `<slice>:<prefix>:<id>`, as containerd
    // writes it when its own cgroup is the parent.
    if let Some((_, rest)) = part.split_once(':') {
        if let Some((prefix, id)) = rest.split_once(':') {
            let runtime = match prefix {
                "cri-containerd" => Some("containerd"),
                "docker" => Some("docker"),
                "crio" => Some("cri-o"),
                "libpod" => Some("podman"),
                _ => None,
            };
            if is_container_id(id) {
                return Ident::container(id, runtime);
            }
        }
    }
    // A bare id: Docker's cgroupfs driver (`/docker/<id>`), or any runtime
    // under Kubernetes' cgroupfs driver, which does not name the runtime.
    if is_container_id(part) {
        let runtime = (parent == Some("docker") && !kube).then_some("docker");
        return Ident::container(part, runtime);
    }
    // LXC, LXD, Proxmox containers and LXC's monitor processes.
    if let Some(name) = part.strip_prefix("lxc.payload.") {
        return Ident::named(name, "lxc");
    }
    if part.starts_with("lxc.monitor.") || part == "lxc.monitor" || part == "lxc.pivot" {
        return Ident::runtime_only("lxc");
    }
    if matches!(parent, Some("lxc") | Some("lxc.payload")) && i == 1 {
        return Ident::named(part, "lxc");
    }
    if parent == Some("lxc.monitor") && i == 1 {
        return Ident::runtime_only("lxc");
    }
    // QEMU guests: Proxmox `/qemu.slice/<vmid>.scope`, libvirt
    // `machine-qemu\x2d<n>\x2d<name>.scope` (systemd escapes `-` as `\x2d`).
    if parent == Some("qemu.slice") {
        if let Some(vmid) = part.strip_suffix(".scope") {
            return Ident::named(vmid, "qemu");
        }
    }
    if let Some(rest) = unscoped.strip_prefix("machine-qemu\\x2d") {
        let name = rest.split_once("\\x2d").map_or(rest, |(_, name)| name);
        return Ident::named(&name.replace("\\x2d", "-"), "qemu");
    }
    // Any other systemd unit keeps its name as systemctl shows it.
    if is_unit(part) {
        return Ident::named(part, "systemd");
    }
    None
}

const UNIT_SUFFIXES: [&str; 6] = [".service", ".scope", ".slice", ".socket", ".mount", ".swap"];

fn is_unit(part: &str) -> bool {
    UNIT_SUFFIXES
        .iter()
        .any(|s| part.len() > s.len() && part.ends_with(s))
}

/// Exactly 64 lowercase hex digits.
pub fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The pod uid of a pod cgroup: `pod<uid>` (cgroupfs driver) or
/// `kubepods[-<qos>]-pod<uid_with_underscores>.slice` (systemd driver,
/// which cannot have `-` inside a slice's name part). A uid is a dashed
/// UUID, or 32 hex digits for a static pod (its config hash).
fn pod_uid(part: &str) -> Option<String> {
    let raw = match part.strip_suffix(".slice") {
        Some(slice) => {
            // The leaf of a systemd slice name is after its last `-`.
            let leaf = slice.rsplit_once('-').map(|(_, leaf)| leaf)?;
            leaf.strip_prefix("pod")?
        }
        None => part.strip_prefix("pod")?,
    };
    let uid = raw.replace('_', "-");
    (is_uuid(&uid) || (uid.len() == 32 && uid.bytes().all(|b| b.is_ascii_hexdigit())))
        .then_some(uid)
}

/// 8-4-4-4-12 hex digits.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "b1b26b2a6a724dd08cf1f0faaa832bd82be3df017f69bccfe2281ba7c09b5b16";

    struct Case {
        path: String,
        id: Option<&'static str>,
        name: Option<&'static str>,
        pod: Option<&'static str>,
        runtime: Option<&'static str>,
    }

    fn case(
        path: impl Into<String>,
        id: Option<&'static str>,
        name: Option<&'static str>,
        pod: Option<&'static str>,
        runtime: Option<&'static str>,
    ) -> Case {
        Case {
            path: path.into(),
            id,
            name,
            pod,
            runtime,
        }
    }

    fn check(cases: &[Case]) {
        let mut failures = Vec::new();
        for c in cases {
            let want = Labels {
                container_id: c.id.map(str::to_string),
                name: c.name.map(str::to_string),
                image: None,
                pod: c.pod.map(str::to_string),
                namespace: None,
                runtime: c.runtime,
            };
            let got = from_path(&c.path);
            if got != want {
                failures.push(format!("{}\n  got  {got:?}\n  want {want:?}", c.path));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn docker() {
        let (d, r) = (Some(ID), Some("docker"));
        check(&[
            // This machine's dockerd 20.10 (cgroupfs driver, cgroup v1), as
            // /proc/<pid>/cgroup showed it for `docker run`.
            case(format!("/docker/{ID}"), d, None, None, r),
            case(format!("/system.slice/docker-{ID}.scope"), d, None, None, r),
            // Rootless docker under the user's manager.
            case(
                format!("/user.slice/user-1000.slice/user@1000.service/docker-{ID}.scope"),
                d,
                None,
                None,
                r,
            ),
            // Docker in docker: the innermost container.
            case(
                format!("/docker/{}/docker/{ID}", "a".repeat(64)),
                d,
                None,
                None,
                r,
            ),
            // `--cgroup-parent=/mygroup`: an id, runtime not in the path.
            case(format!("/mygroup/{ID}"), d, None, None, None),
            // The daemon itself is a unit, not a container.
            case("/system.slice/docker.service", None, Some("docker.service"), None, Some("systemd")),
            case("/docker", None, None, None, None),
            // The shm mount of a container is a systemd mount unit.
            case(
                format!("/system.slice/var-lib-docker-containers-{ID}-mounts-shm.mount"),
                None,
                Some("var-lib-docker-containers-b1b26b2a6a724dd08cf1f0faaa832bd82be3df017f69bccfe2281ba7c09b5b16-mounts-shm.mount"),
                None,
                Some("systemd"),
            ),
        ]);
    }

    #[test]
    fn strict_ids() {
        let short = &ID[..63];
        let long = format!("{ID}0");
        let upper = ID.to_uppercase();
        check(&[
            case(format!("/docker/{short}"), None, None, None, None),
            case(format!("/docker/{long}"), None, None, None, None),
            case(format!("/docker/{upper}"), None, None, None, None),
            case(format!("/docker/{}g", &ID[..63]), None, None, None, None),
            case(
                format!("/system.slice/docker-{short}.scope"),
                None,
                Some(
                    "docker-b1b26b2a6a724dd08cf1f0faaa832bd82be3df017f69bccfe2281ba7c09b5b1.scope",
                ),
                None,
                Some("systemd"),
            ),
        ]);
    }

    #[test]
    fn kubernetes() {
        let uid = Some("8712f785-1a3e-41ec-a00b-e2dcc77431cb");
        check(&[
            // systemd driver, containerd (coroot-node-agent's fixture shapes).
            case(
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8712f785_1a3e_41ec_a00b_e2dcc77431cb.slice/cri-containerd-{ID}.scope"),
                Some(ID), None, uid, Some("containerd"),
            ),
            // Guaranteed QoS has no QoS slice.
            case(
                format!("/kubepods.slice/kubepods-pod8712f785_1a3e_41ec_a00b_e2dcc77431cb.slice/cri-containerd-{ID}.scope"),
                Some(ID), None, uid, Some("containerd"),
            ),
            // Docker (dockershim / cri-dockerd) with the systemd driver.
            case(
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod8712f785_1a3e_41ec_a00b_e2dcc77431cb.slice/docker-{ID}.scope"),
                Some(ID), None, uid, Some("docker"),
            ),
            // CRI-O, and the `container` leaf it creates under the scope.
            case(
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8712f785_1a3e_41ec_a00b_e2dcc77431cb.slice/crio-{ID}.scope/container"),
                Some(ID), None, uid, Some("cri-o"),
            ),
            // CRI-O's conmon is not the container.
            case(
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8712f785_1a3e_41ec_a00b_e2dcc77431cb.slice/crio-conmon-{ID}.scope"),
                None, Some("crio-conmon-b1b26b2a6a724dd08cf1f0faaa832bd82be3df017f69bccfe2281ba7c09b5b16.scope"), uid, Some("systemd"),
            ),
            // cgroupfs driver: the runtime is not in the path.
            case(
                format!("/kubepods/burstable/pod8712f785-1a3e-41ec-a00b-e2dcc77431cb/{ID}"),
                Some(ID), None, uid, None,
            ),
            case(
                format!("/kubepods/pod8712f785-1a3e-41ec-a00b-e2dcc77431cb/{ID}"),
                Some(ID), None, uid, None,
            ),
            // A process's sub-cgroup inside the container.
            case(
                format!("/kubepods/besteffort/pod8712f785-1a3e-41ec-a00b-e2dcc77431cb/{ID}/kube-proxy"),
                Some(ID), None, uid, None,
            ),
            case(
                format!("/kubepods/burstable/pod8712f785-1a3e-41ec-a00b-e2dcc77431cb/crio-{ID}"),
                Some(ID), None, uid, Some("cri-o"),
            ),
            // Static pods are named by a 32-hex config hash.
            case(
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3e61c214bc3ed9ff81e21474dd6cba17.slice/cri-containerd-{ID}"),
                Some(ID), None, Some("3e61c214bc3ed9ff81e21474dd6cba17"), Some("containerd"),
            ),
            case(
                format!("/kubepods/burstable/pod9729a196c4723b60ab401eaff722982d/{ID}"),
                Some(ID), None, Some("9729a196c4723b60ab401eaff722982d"), None,
            ),
            // runc's `slice:prefix:id` syntax under containerd's own unit.
            case(
                format!("/system.slice/containerd.service/kubepods-burstable-pod8712f785_1a3e_41ec_a00b_e2dcc77431cb.slice:cri-containerd:{ID}"),
                Some(ID), None, uid, Some("containerd"),
            ),
            // kind's nodes root kubelet's tree under kubelet.slice.
            case(
                format!("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod8712f785_1a3e_41ec_a00b_e2dcc77431cb.slice/cri-containerd-{ID}.scope"),
                Some(ID), None, uid, Some("containerd"),
            ),
            // The pod's own cgroup, and the QoS slices above it.
            case(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8712f785_1a3e_41ec_a00b_e2dcc77431cb.slice",
                None, Some("kubepods-burstable-pod8712f785_1a3e_41ec_a00b_e2dcc77431cb.slice"), uid, Some("systemd"),
            ),
            case("/kubepods/burstable/pod8712f785-1a3e-41ec-a00b-e2dcc77431cb", None, None, uid, None),
            case("/kubepods/burstable", None, None, None, None),
            case("/kubepods.slice", None, Some("kubepods.slice"), None, Some("systemd")),
            // Not a uid: no pod label.
            case("/kubepods/burstable/podnotauid", None, None, None, None),
            case("/kubepods/burstable/pod8712f785-1a3e-41ec-a00b-e2dcc77431c", None, None, None, None),
            // Outside a kubepods tree `pod<hex>` means nothing.
            case("/pod8712f785-1a3e-41ec-a00b-e2dcc77431cb", None, None, None, None),
        ]);
    }

    #[test]
    fn podman() {
        let p = Some("podman");
        check(&[
            case(format!("/machine.slice/libpod-{ID}.scope"), Some(ID), None, None, p),
            case(format!("/machine.slice/libpod-{ID}.scope/container"), Some(ID), None, None, p),
            case(format!("/libpod_parent/libpod-{ID}"), Some(ID), None, None, p),
            // Rootless, in a podman pod.
            case(
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/machine-libpod_pod_{}.slice/libpod-{ID}.scope/container", "c".repeat(64)),
                Some(ID), None, None, p,
            ),
            case(
                format!("/machine.slice/libpod-conmon-{ID}.scope"),
                None,
                Some("libpod-conmon-b1b26b2a6a724dd08cf1f0faaa832bd82be3df017f69bccfe2281ba7c09b5b16.scope"),
                None,
                Some("systemd"),
            ),
        ]);
    }

    #[test]
    fn lxc_and_qemu() {
        let (l, q) = (Some("lxc"), Some("qemu"));
        check(&[
            case(
                "/lxc/mysql-primary-db",
                None,
                Some("mysql-primary-db"),
                None,
                l,
            ),
            // Proxmox: the vmid, and the container's own tree under it.
            case("/lxc/100", None, Some("100"), None, l),
            case("/lxc/100/ns", None, Some("100"), None, l),
            case(
                "/lxc/100/ns/system.slice/nginx.service",
                None,
                Some("100"),
                None,
                l,
            ),
            case("/lxc.payload.first", None, Some("first"), None, l),
            case(
                "/lxc.payload.first/init.scope",
                None,
                Some("first"),
                None,
                l,
            ),
            // Docker inside an LXC guest is the innermost container.
            case(
                format!("/lxc.payload.first/system.slice/docker-{ID}.scope"),
                Some(ID),
                None,
                None,
                Some("docker"),
            ),
            case("/lxc.payload/first", None, Some("first"), None, l),
            // LXC's monitor process belongs to LXC, not to the guest.
            case("/lxc.monitor.first", None, None, None, l),
            case("/lxc.monitor/100", None, None, None, l),
            case("/lxc", None, None, None, None),
            case("/lxc.payload.", None, None, None, None),
            case("/qemu.slice/100.scope", None, Some("100"), None, q),
            case(
                "/qemu.slice",
                None,
                Some("qemu.slice"),
                None,
                Some("systemd"),
            ),
            case(
                r"/machine.slice/machine-qemu\x2d1\x2dubuntu\x2d22.scope",
                None,
                Some("ubuntu-22"),
                None,
                q,
            ),
            case(
                r"/machine.slice/machine-qemu\x2d1\x2dvm1.scope/libvirt/vcpu0",
                None,
                Some("vm1"),
                None,
                q,
            ),
        ]);
    }

    #[test]
    fn systemd() {
        let s = Some("systemd");
        check(&[
            case(
                "/system.slice/nginx.service",
                None,
                Some("nginx.service"),
                None,
                s,
            ),
            case(
                "/system.slice/system-postgresql.slice/postgresql@9.4-main.service",
                None,
                Some("postgresql@9.4-main.service"),
                None,
                s,
            ),
            // The unit name as systemctl shows it, escapes included.
            case(
                r"/system.slice/system-serial\x2dgetty.slice",
                None,
                Some(r"system-serial\x2dgetty.slice"),
                None,
                s,
            ),
            case(
                "/user.slice/user-1000.slice/session-3.scope",
                None,
                Some("session-3.scope"),
                None,
                s,
            ),
            case(
                "/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.socket",
                None,
                Some("dbus.socket"),
                None,
                s,
            ),
            case("/init.scope", None, Some("init.scope"), None, s),
            case("/system.slice", None, Some("system.slice"), None, s),
            // A scope's helper sub-cgroup keeps the scope.
            case(
                "/system.slice/nginx.service/worker",
                None,
                Some("nginx.service"),
                None,
                s,
            ),
            case("/", None, None, None, None),
            case("", None, None, None, None),
            case("/.service", None, None, None, None),
            case("/some/plain/group", None, None, None, None),
        ]);
    }
}
