/* ACPI fixed-hardware power management registers (ACPI 6.5 §4.8.4): the PM1a
 * event block (PM1_STS, PM1_EN), the PM1a control block (PM1_CNT) and the
 * power management timer, on the port-I/O bus. The FADT (arch/x86/acpi.c)
 * points the guest here with the same constants.
 *
 * Port map (one bus range, ACPI_PM_BASE .. +ACPI_PM_LEN):
 *   0x600  PM1a_STS   16 bits, write 1 to clear
 *   0x602  PM1a_EN    16 bits
 *   0x604  PM1a_CNT   16 bits; SLP_EN with SLP_TYP = S5 powers the VM off
 *   0x606  (unused: reads all-ones)
 *   0x608  PM_TMR     32-bit read, 24-bit counter at 3.579545 MHz
 *
 * The guest is hostile: accesses of the wrong width or at unused offsets
 * read all-ones and are otherwise ignored. PM1 registers take 1- or 2-byte
 * accesses inside one register; PM_TMR takes only 4-byte reads.
 *
 * The SCI (ACPI_SCI_IRQ, level-triggered, active-high as the MADT says) is
 * raised while an enabled event is latched in PM1_STS. Events come only from
 * the host (acpi_pm_set_status); TMR_STS never sets, since nothing ticks on
 * the timer's overflow — Linux uses PM_TMR only as a free-running clock. */
#ifndef TARN_ACPI_PM_H
#define TARN_ACPI_PM_H

#include <pthread.h>
#include <stdint.h>

#define ACPI_PM_BASE 0x600
#define ACPI_PM1A_EVT_PORT (ACPI_PM_BASE + 0x0)
#define ACPI_PM1A_EVT_LEN 4 /* PM1_STS + PM1_EN */
#define ACPI_PM1A_CNT_PORT (ACPI_PM_BASE + 0x4)
#define ACPI_PM1A_CNT_LEN 2
#define ACPI_PM_TMR_PORT (ACPI_PM_BASE + 0x8)
#define ACPI_PM_TMR_LEN 4
#define ACPI_PM_LEN 0xc

#define ACPI_SCI_IRQ 9

/* PM1_STS / PM1_EN bits, ACPI 6.5 §4.8.4.1 (Tables 4.11, 4.12). */
#define ACPI_PM1_TMR 0x0001	 /* TMR_STS / TMR_EN */
#define ACPI_PM1_BM_STS 0x0010	 /* status only */
#define ACPI_PM1_GBL 0x0020	 /* GBL_STS / GBL_EN */
#define ACPI_PM1_PWRBTN 0x0100	 /* PWRBTN_STS / PWRBTN_EN */
#define ACPI_PM1_SLPBTN 0x0200	 /* SLPBTN_STS / SLPBTN_EN */
#define ACPI_PM1_RTC 0x0400	 /* RTC_STS / RTC_EN */
#define ACPI_PM1_PCIEXP_WAKE 0x4000 /* PCIEXP_WAKE_STS / PCIEXP_WAKE_DIS */
#define ACPI_PM1_WAK_STS 0x8000	 /* status only */

/* PM1_CNT bits, ACPI 6.5 §4.8.4.2.1 (Table 4.13). */
#define ACPI_PM1_CNT_SCI_EN 0x0001
#define ACPI_PM1_CNT_BM_RLD 0x0002
#define ACPI_PM1_CNT_GBL_RLS 0x0004 /* write-only */
#define ACPI_PM1_CNT_SLP_TYP_SHIFT 10
#define ACPI_PM1_CNT_SLP_TYP_MASK 0x1c00
#define ACPI_PM1_CNT_SLP_EN 0x2000 /* write-only */

/* The only sleep state the DSDT offers: \_S5 = Package { 5, 5, 0, 0 }. */
#define ACPI_SLP_TYP_S5 5

#define ACPI_PM_TMR_HZ 3579545ULL
#define ACPI_PM_TMR_MASK 0xffffffu /* 24 bits: the FADT leaves TMR_VAL_EXT clear */

struct devctx;

struct acpi_pm {
	const struct devctx *ctx;
	pthread_mutex_t lock; /* vCPU threads access the ports concurrently */
	uint16_t sts;	      /* latched events */
	uint16_t en;
	uint16_t cnt;	      /* SCI_EN | BM_RLD | SLP_TYP as last written */
	int sci_level;	      /* what we last drove on the SCI line */
	uint64_t start_ns;    /* CLOCK_MONOTONIC at creation: timer zero */
};

/* Reset the registers and claim [ACPI_PM_BASE, +ACPI_PM_LEN) on vm->pio.
 * pm must outlive the bus. Returns 0 or -errno from bus_register. */
int acpi_pm_init(struct acpi_pm *pm, const struct devctx *ctx) __attribute__((warn_unused_result));
void acpi_pm_destroy(struct acpi_pm *pm);

/* Latch host-side events into PM1_STS (e.g. a power-button press) and raise
 * the SCI if the guest enabled them. */
void acpi_pm_set_status(struct acpi_pm *pm, uint16_t bits);

#endif
