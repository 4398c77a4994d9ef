/* The VM-wide interrupt controllers and timer as a snapshot holds them,
 * the same whichever backend runs them: the emulator's models (hw/pic.h,
 * hw/ioapic.h, hw/pit.h) save and restore this form directly, and the KVM
 * backend converts KVM_GET_IRQCHIP / KVM_GET_PIT2 to and from it. */
#ifndef TARN_HW_PLATFORM_STATE_H
#define TARN_HW_PLATFORM_STATE_H

#include <stdint.h>

#include "hw/ioapic.h"
#include "hw/pic.h"
#include "hw/pit.h"

struct platform_state {
	struct pic_state pic;
	struct ioapic_state ioapic;
	struct pit_state pit;
	/* The guest's kvmclock time in ns (what KVM_GET_CLOCK reads): its
	 * clock carries on from here after a restore. */
	uint64_t kvmclock_ns;
};

#endif
