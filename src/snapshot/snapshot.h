/* Snapshots of a whole VM (docs/snapshot.md): the state file with one
 * section per vCPU, per interrupt controller and per device, and the
 * memory file with guest RAM as it lies in the guest.
 *
 * Each device registers its save/restore pair when it is created
 * (snap_register, in the same call that builds it), so the list of what a
 * snapshot holds is the list of what the VM has. A restore builds the VM
 * from the configuration the snapshot carries, maps the memory file and
 * hands every section to the component that registered for it; a section
 * without a component, or a component without its section, refuses the
 * snapshot. */
#ifndef TARN_SNAPSHOT_H
#define TARN_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86/cpuid.h"
#include "snapshot/snapfile.h"

struct vm;
struct vm_config;

struct snap_ops {
	const char *name; /* in errors: "virtio-blk" */
	uint32_t id;	  /* SNAP_ID("....") */
	uint32_t version; /* the section's layout, the only one restore reads */
	void (*save)(void *obj, struct snap_buf *b);
	/* Read the fields (c never reads past the section), check them as
	 * live input is checked, apply them. 0, or -EINVAL with the reason. */
	int (*restore)(void *obj, struct snap_cur *c, char *err, size_t err_len);
};

struct snap_entry {
	const struct snap_ops *ops;
	void *obj;
	uint32_t instance;
};

/* A VM's components, in the order they were created. */
struct snap_registry {
	struct snap_entry *e;
	int nr, cap;
};

/* Add a component (device creation). 0 or -ENOMEM. */
int snap_register(struct snap_registry *r, const struct snap_ops *ops, void *obj, uint32_t instance)
	__attribute__((warn_unused_result));
void snap_registry_free(struct snap_registry *r);

/* Write a paused VM's snapshot: state to path, RAM to mem_path, each first
 * to a temporary name and renamed into place when complete (a VM restored
 * from an older memory file keeps its mapping). With diff, the memory file
 * holds only the pages written since the last snapshot or the restore
 * (vm_config.track_dirty), at their places, the rest holes: it is the
 * base's memory file once written over it (tarn img merge-mem). 0, or
 * -errno with the reason in err (-EBUSY: the VM is not paused; -EINVAL: a
 * diff without tracking or without a base). */
int vm_snapshot_save(struct vm *vm, const char *path, const char *mem_path, bool diff, char *err, size_t err_len)
	__attribute__((warn_unused_result));

/* A paused VM's state file alone (no memory) into fd (empty, seekable:
 * a memfd), as a migration sends it; identity_only: only the sections that
 * say what the VM is (configuration, CPUID), which a VM running or not
 * has. 0, or -errno with the reason in err. */
int snap_state_write(struct vm *vm, int fd, bool identity_only, char *err, size_t err_len)
	__attribute__((warn_unused_result));

/* Write the pages a diff snapshot's memory file holds (its data, not its
 * holes) over the base's memory file, which then is the diff's memory:
 * diffs go onto their base in the order they were taken. *merged: bytes
 * copied. 0, or -errno with the reason (sizes that differ, a file system
 * that does not report holes). */
int snap_merge_memory(const char *diff, const char *base, uint64_t *merged, char *err, size_t len)
	__attribute__((warn_unused_result));

/* An opened snapshot, before a VM is built from it. */
struct snap_image {
	struct snap_reader r;
	int mem_fd;
	uint64_t mem_size;
	struct cpuid_model cpuid; /* the CPU the guest saw: every vCPU gets it */
	uint64_t open_ns; /* when snap_open began: restore time is logged from it */
};

/* Open and check a snapshot: the state file whole (snapfile.h's checks),
 * the configuration section, and the memory file's size against it. Fill
 * vc from the configuration (strings point into img) and point vc->restore
 * at img; the caller may then change the backend, and the console fds. 0,
 * or -errno with the reason in err. */
int snap_open(struct snap_image *img, const char *path, const char *mem_path, struct vm_config *vc,
	      char *err, size_t err_len) __attribute__((warn_unused_result));
/* The same from a state file alone (read from fd, checked whole), without
 * a memory file (mem_fd -1): the memory arrives otherwise (a migration). */
int snap_open_state(struct snap_image *img, int fd, struct vm_config *vc, char *err, size_t err_len)
	__attribute__((warn_unused_result));
void snap_close(struct snap_image *img);

/* vm_create's part of a restore. snap_map_memory: the memory file over
 * guest RAM (copy-on-write, or read in whole with eager); snap_apply: every
 * section into the VM built from the snapshot's configuration, which is left
 * paused (vm_resume starts it). 0 or -errno with the reason in err. */
int snap_map_memory(struct vm *vm, const struct snap_image *img, bool eager, char *err, size_t err_len)
	__attribute__((warn_unused_result));
int snap_apply(struct vm *vm, const struct snap_image *img, char *err, size_t err_len)
	__attribute__((warn_unused_result));

#endif
