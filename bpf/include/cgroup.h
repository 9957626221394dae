/* A task's cgroup id, as the cgroup sampler names cgroups: the kernfs id
 * of the cgroup directory, which is its inode number (what stat() on the
 * directory under /sys/fs/cgroup returns), so user space can map ids to
 * paths without asking the kernel. Ids are 64-bit and not reused.
 *
 * Which hierarchy: on pure cgroup v2 the task's default-hierarchy cgroup;
 * on v1 (and v1 hybrid) the cgroup of the cpu controller, the hierarchy
 * whose cgroups hold CPU time. The loader sets both constants from the
 * layout it detected, the subsystem index from the running kernel's BTF
 * (enum cgroup_subsys_id differs with the kernel's config). */
#ifndef SONDE_CGROUP_H
#define SONDE_CGROUP_H

#include <bpf/bpf_core_read.h>

/* Bound of the subsys[] index, for the verifier. */
#define CGROUP_SUBSYS_BOUND 16

const volatile bool cgroup_dfl = false;
const volatile __u32 cgroup_subsys = 0;

/* `btf`: t is a BTF pointer (plain loads, faults read as 0); otherwise
 * every step is a probe read. 0 when the task has no cgroup we can name. */
static __always_inline __u64 task_cgroup_id(bool btf, struct task_struct *t)
{
	struct cgroup_subsys_state *css;
	struct cgroup *cg;
	struct css_set *cs;

	if (btf) {
		cs = t->cgroups;
		if (!cs)
			return 0;
		if (cgroup_dfl) {
			cg = cs->dfl_cgrp;
		} else {
			css = cs->subsys[cgroup_subsys & (CGROUP_SUBSYS_BOUND - 1)];
			if (!css)
				return 0;
			cg = css->cgroup;
		}
		if (!cg || !cg->kn)
			return 0;
		return cg->kn->id;
	}
	cs = BPF_CORE_READ(t, cgroups);
	if (!cs)
		return 0;
	if (cgroup_dfl) {
		cg = BPF_CORE_READ(cs, dfl_cgrp);
	} else {
		bpf_probe_read_kernel(&css, sizeof(css),
				      &cs->subsys[cgroup_subsys & (CGROUP_SUBSYS_BOUND - 1)]);
		if (!css)
			return 0;
		cg = BPF_CORE_READ(css, cgroup);
	}
	if (!cg)
		return 0;
	return BPF_CORE_READ(cg, kn, id);
}

#endif
