//! Tests that load BPF programs into the running kernel.

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::MapCore as _;

use super::consts::h2::H2_TEST_VALUES;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/h2.skel.rs"));
}

/// BPF needs root. Under CI a test that cannot load fails; elsewhere it
/// says loudly that it did not run.
pub fn bpf_available() -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "BPF tests need root (CI=true)"
    );
    eprintln!("SKIPPED: BPF tests need root");
    false
}

/// The BPF `h2_index` equals the histogram crate's bucket index for every
/// power of two up to 2^63, its neighbours, and the extremes.
#[test]
fn bpf_bucket_function_matches_the_histogram_crate() {
    if !bpf_available() {
        return;
    }
    let mut values = vec![
        0u64,
        1,
        u64::MAX,
        u64::MAX - 1,
        (1 << 31) + 12345,
        (1 << 32) + 98765,
    ];
    for k in 0..64 {
        let p = 1u64 << k;
        values.extend([p - 1, p, p.saturating_add(1)]);
    }
    values.sort_unstable();
    values.dedup();
    assert!(values.len() <= H2_TEST_VALUES);

    let storage = Box::leak(Box::new(std::mem::MaybeUninit::uninit()));
    let mut open = skel::H2SkelBuilder::default()
        .open(storage)
        .expect("open h2 test object");
    for mut m in open.open_object_mut().maps_mut() {
        m.set_max_entries(H2_TEST_VALUES as u32).unwrap();
    }
    let skel = open.load().expect("load h2 test program");
    for (i, v) in values.iter().enumerate() {
        let key = (i as u32).to_ne_bytes();
        skel.maps
            .h2_values
            .update(&key, &v.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
            .unwrap();
    }
    skel.progs
        .h2_test
        .test_run(libbpf_rs::ProgramInput::default())
        .expect("run h2 test program");

    let mut h = histogram::Histogram::new(3, 64).unwrap();
    for (i, v) in values.iter().enumerate() {
        let key = (i as u32).to_ne_bytes();
        let out = skel
            .maps
            .h2_indexes
            .lookup(&key, libbpf_rs::MapFlags::ANY)
            .unwrap()
            .unwrap();
        let bpf_index = u64::from_ne_bytes(out.try_into().unwrap()) as usize;
        h.reset();
        h.increment(*v).unwrap();
        let crate_index = h.as_slice().iter().position(|&c| c == 1).unwrap();
        assert_eq!(bpf_index, crate_index, "value {v}");
        assert_eq!(crate::histogram::index(*v), crate_index, "value {v}");
    }
}

/// Hooks a kernel lacks are found from its BTF before loading, so a
/// sampler degrades by one program instead of failing its whole object.
#[test]
fn tracepoints_are_looked_up_in_the_kernel_btf() {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no kernel BTF (CI=true)"
        );
        eprintln!("SKIPPED: no /sys/kernel/btf/vmlinux");
        return;
    }
    assert!(super::btf::kernel_has_tracepoint("sched_switch"));
    assert!(super::btf::kernel_has_tracepoint("sys_enter"));
    assert!(!super::btf::kernel_has_tracepoint(
        "sonde_no_such_tracepoint"
    ));
}
