/* ACPI PM1a event/control registers and the PM timer (ACPI 6.5 §4.8.4).
 *
 * There is no firmware behind these registers: the platform is always in
 * ACPI mode (the FADT's SMI_CMD is 0), so SCI_EN reads as 1 whatever the
 * guest writes, and the only sleep state we implement is S5, which ends the
 * VM. Everything arriving here is guest-controlled. */
#include "hw/acpi_pm.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "bus/bus.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/devctx.h"

/* Register offsets inside the block. */
#define OFF_STS 0x0
#define OFF_EN 0x2
#define OFF_CNT 0x4
#define OFF_TMR 0x8

/* PM1_EN bits that exist (ACPI 6.5 Table 4.12); others read back 0, which
 * is how an OS learns a fixed event is absent. ACPICA writes GBL_EN and
 * reads it back, so what exists must stick. */
#define EN_MASK                                                                   \
	(ACPI_PM1_TMR | ACPI_PM1_GBL | ACPI_PM1_PWRBTN | ACPI_PM1_SLPBTN | ACPI_PM1_RTC | \
	 ACPI_PM1_PCIEXP_WAKE)
/* PM1_CNT bits that hold a value; SLP_EN and GBL_RLS are write-only
 * strobes and SCI_EN is forced on. */
#define CNT_STORED (ACPI_PM1_CNT_BM_RLD | ACPI_PM1_CNT_SLP_TYP_MASK)

/* Events that raise the SCI when enabled. PCIEXP_WAKE's enable bit has the
 * opposite sense (a disable) and only matters for wake from sleep, which we
 * do not have, so it never raises the SCI here. */
#define SCI_EVENTS (ACPI_PM1_TMR | ACPI_PM1_GBL | ACPI_PM1_PWRBTN | ACPI_PM1_SLPBTN | ACPI_PM1_RTC)

static uint32_t timer_value(const struct acpi_pm *pm)
{
	uint64_t ns = guest_clock_ns(pm->ctx->clock) - pm->start_ns;
	/* 128-bit product: ns * 3.58e6 overflows 64 bits after ~85 minutes. */
	uint64_t ticks = (uint64_t)((unsigned __int128)ns * ACPI_PM_TMR_HZ / 1000000000ULL);
	return (uint32_t)ticks & ACPI_PM_TMR_MASK;
}

/* Drive the SCI from the latched state. Called with pm->lock held so that
 * level changes reach the interrupt controller in the order they happened;
 * the controller never calls back into this device. Only transitions are
 * sent, so a device with nothing enabled never touches the controller. */
static void update_sci(struct acpi_pm *pm)
{
	int level = (pm->sts & pm->en & SCI_EVENTS) != 0;
	if (level == pm->sci_level)
		return;
	pm->sci_level = level;
	dev_irq_line(pm->ctx, ACPI_SCI_IRQ, level);
}

/* A PM1 register access is valid when it is 1 or 2 bytes wide and lies
 * inside one 16-bit register (the widths the FADT's GAS entries allow). */
static bool pm1_access_ok(uint64_t off, unsigned len, uint64_t *reg, unsigned *shift)
{
	if (off >= OFF_TMR || (len != 1 && len != 2))
		return false;
	uint64_t in_reg = off & 1;
	if (in_reg + len > 2)
		return false;
	*reg = off & ~1ULL;
	*shift = 8 * (unsigned)in_reg;
	return true;
}

static void acpi_pm_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct acpi_pm *pm = opaque;
	uint32_t v = 0xffffffffu;
	uint64_t reg;
	unsigned shift;

	if (len > 4) { /* guest-controlled: the bus allows 8 */
		memset(data, 0xff, len);
		return;
	}
	if (off == OFF_TMR && len == 4) {
		/* Lock-free: the timer is a pure function of the clock. */
		v = timer_value(pm);
	} else if (pm1_access_ok(off, len, &reg, &shift)) {
		uint16_t r = 0xffff;
		pthread_mutex_lock(&pm->lock);
		if (reg == OFF_STS)
			r = pm->sts;
		else if (reg == OFF_EN)
			r = pm->en;
		else if (reg == OFF_CNT)
			r = pm->cnt | ACPI_PM1_CNT_SCI_EN;
		pthread_mutex_unlock(&pm->lock);
		v = (uint32_t)r >> shift; /* only len bytes go back */
	} else {
		pr_warn_ratelimited("acpi-pm: %u-byte read at +%#llx ignored", len,
				    (unsigned long long)off);
	}
	for (unsigned i = 0; i < len; i++)
		((uint8_t *)data)[i] = (uint8_t)(v >> (8 * i));
}

static void acpi_pm_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct acpi_pm *pm = opaque;
	uint64_t reg;
	unsigned shift;
	bool poweroff = false;

	if (!pm1_access_ok(off, len, &reg, &shift)) {
		/* PM_TMR is read-only; everything else here is unused. */
		pr_warn_ratelimited("acpi-pm: %u-byte write at +%#llx ignored", len,
				    (unsigned long long)off);
		return;
	}
	const uint8_t *b = data;
	uint16_t val = b[0];
	if (len == 2)
		val |= (uint16_t)(b[1] << 8);
	uint16_t mask = (uint16_t)(((1u << (8 * len)) - 1) << shift);
	val = (uint16_t)(val << shift); /* guest-controlled */

	pthread_mutex_lock(&pm->lock);
	switch (reg) {
	case OFF_STS:
		/* Write 1 to clear; 0 bits leave their status alone. */
		pm->sts &= (uint16_t)~val;
		break;
	case OFF_EN:
		pm->en = (uint16_t)((pm->en & ~mask) | (val & EN_MASK));
		break;
	case OFF_CNT: {
		uint16_t cnt = (uint16_t)((pm->cnt & ~mask) | (val & mask));
		pm->cnt = (cnt & CNT_STORED) | ACPI_PM1_CNT_SCI_EN;
		if (val & ACPI_PM1_CNT_SLP_EN) {
			unsigned typ = (cnt & ACPI_PM1_CNT_SLP_TYP_MASK) >>
				       ACPI_PM1_CNT_SLP_TYP_SHIFT;
			if (typ == ACPI_SLP_TYP_S5) {
				poweroff = true;
			} else {
				/* The DSDT offers no other state, so a guest
				 * asking for one is confused or hostile. Wake
				 * at once (WAK_STS) rather than leave it
				 * spinning on a sleep that never comes. */
				pm->sts |= ACPI_PM1_WAK_STS;
				pr_warn_ratelimited("acpi-pm: guest asked for sleep type %u; "
						    "only S5 (%d) is supported",
						    typ, ACPI_SLP_TYP_S5);
			}
		}
		break;
	}
	}
	update_sci(pm);
	pthread_mutex_unlock(&pm->lock);

	/* Outside our lock: stopping takes the VM's lock and kicks vCPUs. */
	if (poweroff)
		dev_request_stop(pm->ctx, VM_EXIT_POWEROFF);
}

static const struct bus_ops acpi_pm_ops = {
	.read = acpi_pm_read,
	.write = acpi_pm_write,
};

/* The PM timer as the time since it started, so that it carries on. */
static void pm_save(void *obj, struct snap_buf *b)
{
	struct acpi_pm *pm = obj;

	pthread_mutex_lock(&pm->lock);
	snap_put_u16(b, pm->sts);
	snap_put_u16(b, pm->en);
	snap_put_u16(b, pm->cnt);
	snap_put_u8(b, (uint8_t)pm->sci_level);
	snap_put_u64(b, guest_clock_ns(pm->ctx->clock) - pm->start_ns);
	pthread_mutex_unlock(&pm->lock);
}

static int pm_restore(void *obj, struct snap_cur *c, char *err, size_t len)
{
	struct acpi_pm *pm = obj;
	uint16_t sts = snap_get_u16(c), en = snap_get_u16(c), cnt = snap_get_u16(c);
	uint8_t sci = snap_get_u8(c);
	uint64_t elapsed = snap_get_u64(c);

	if (cnt & ~(ACPI_PM1_CNT_SCI_EN | ACPI_PM1_CNT_BM_RLD | ACPI_PM1_CNT_SLP_TYP_MASK) || sci > 1)
		return errorf(err, len, -EINVAL, "PM1 control %#x or SCI level %u out of range", cnt, sci);
	pthread_mutex_lock(&pm->lock);
	pm->sts = sts;
	pm->en = en;
	pm->cnt = cnt;
	pm->sci_level = sci;
	pm->start_ns = guest_clock_ns(pm->ctx->clock) - elapsed;
	update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

static const struct snap_ops pm_snap = {
	.name = "ACPI PM", .id = SNAP_ID("ACPI"), .version = 1, .save = pm_save, .restore = pm_restore,
};

int acpi_pm_init(struct acpi_pm *pm, const struct devctx *ctx)
{
	int err;

	memset(pm, 0, sizeof(*pm));
	pm->ctx = ctx;
	pm->cnt = ACPI_PM1_CNT_SCI_EN;
	pm->start_ns = guest_clock_ns(ctx->clock);
	err = -pthread_mutex_init(&pm->lock, NULL);
	if (err)
		return err;
	if (dev_register_state(ctx, &pm_snap, pm, 0)) {
		pthread_mutex_destroy(&pm->lock);
		return -ENOMEM;
	}
	err = bus_register(ctx->pio, ACPI_PM_BASE, ACPI_PM_LEN, &acpi_pm_ops, pm, "acpi-pm");
	if (err)
		pthread_mutex_destroy(&pm->lock);
	return err;
}

void acpi_pm_destroy(struct acpi_pm *pm)
{
	pthread_mutex_destroy(&pm->lock);
}

void acpi_pm_set_status(struct acpi_pm *pm, uint16_t bits)
{
	pthread_mutex_lock(&pm->lock);
	pm->sts |= bits;
	update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}
