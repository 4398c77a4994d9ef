/* A vCPU's architectural state (arch/x86/cpu_state.h) as a snapshot
 * section ("VCPU", one per vCPU, docs/snapshot.md), written field by field
 * and read back through the checks a restore needs: a state that passes
 * the checksum but that no x86 CPU could be in is refused with the reason. */
#ifndef TARN_SNAP_VCPU_STATE_H
#define TARN_SNAP_VCPU_STATE_H

#include <stddef.h>

#include "arch/x86/cpu_state.h"
#include "snapshot/snapfile.h"

#define SNAP_VCPU_ID SNAP_ID("VCPU")
#define SNAP_VCPU_VERSION 2

/* Append st's fields to b. st must hold every part (get_state's). */
void snap_put_vcpu(struct snap_buf *b, const struct x86_state *st);

/* Read a VCPU section of the given layout version into st: 0, or -EINVAL
 * with the reason in err. */
int snap_get_vcpu(const void *data, size_t len, unsigned version, struct x86_state *st, char *err,
		  size_t err_len) __attribute__((warn_unused_result));

/* The checks on their own: 0 when a CPU could be in st, else -EINVAL. */
int x86_state_check(const struct x86_state *st, char *err, size_t err_len) __attribute__((warn_unused_result));

#endif
