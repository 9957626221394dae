//! Build script. The eBPF samplers compile `bpf/<category>/<name>.bpf.c`
//! into skeletons here; until the first program lands there is nothing to
//! compile, but changes under bpf/ already trigger a rebuild.

fn main() {
    println!("cargo:rerun-if-changed=bpf");
}
