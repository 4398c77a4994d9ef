/* A PCI root complex: one bus (bus 0), a host bridge at 00:00.0, config
 * space through the legacy ports 0xCF8/0xCFC and through ECAM, BARs that
 * tarn places at creation (as firmware would) and that follow the guest when
 * it reprograms them, INTx routed to IOAPIC GSIs, and MSI-X.
 *
 * Guest-physical layout (inside the 3-4 GiB hole, see mem/gm.h):
 *   [PCI_MMIO32_BASE, +PCI_MMIO32_SIZE)  memory BARs (32- and 64-bit)
 *   [PCI_ECAM_BASE, +PCI_ECAM_SIZE)      ECAM (MMCONFIG) for bus 0 only
 *   ports [PCI_IO_BASE, +PCI_IO_SIZE)    I/O BARs
 * 0xD0000000 and 0xE0000000 stay unclaimed: the micro-guest tests use them
 * for a test device and for "nothing is mapped here".
 *
 * The MMIO window and the I/O window are each one range on the VM's bus;
 * BAR decoding happens inside, under a rwlock, because the bus tables are
 * read without a lock once the VM runs. A BAR the guest moves outside the
 * windows stops decoding (Linux keeps BARs inside the root's _CRS).
 *
 * INTx: device in slot S with pin P (1 = INTA#) drives GSI
 * PCI_INTX_GSI_BASE + ((S + P - 1) & 3), the classic swizzle over the four
 * IOAPIC pins 16-19 that no ISA device uses; level-triggered, and shared
 * lines are the OR of their devices. The DSDT's _PRT says the same.
 *
 * Locking: root->lock (rwlock: config space and BAR layout) may be held
 * while a device's msix lock is taken, never the other way round. BAR
 * callbacks run with root->lock held for reading: they must not touch the
 * device's config space through this API (pci_msix_notify/pci_set_irq are
 * fine). */
#ifndef TARN_PCI_H
#define TARN_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/devctx.h"

struct devctx;

#define PCI_ECAM_BASE 0xF0000000ULL
#define PCI_ECAM_SIZE 0x100000ULL /* bus 0: 32 devices x 8 functions x 4 KiB */
#define PCI_MMIO32_BASE 0xC0000000ULL
#define PCI_MMIO32_SIZE 0x10000000ULL /* 256 MiB */
#define PCI_IO_BASE 0xC000
#define PCI_IO_SIZE 0x4000
#define PCI_CONFIG_ADDR 0xCF8
#define PCI_CONFIG_DATA 0xCFC
#define PCI_INTX_GSI_BASE 16
#define PCI_INTX_LINES 4 /* GSIs PCI_INTX_GSI_BASE .. + 3 */
#define PCI_MAX_SLOTS 32
#define PCI_CFG_SIZE 4096 /* PCIe extended config space; CF8 reaches 256 */

/* Host bridge IDs: Intel's "virtual PCIe host" 8086:0d57, the ID Cloud
 * Hypervisor (and OVMF's CloudHv platform) gives its host bridge. Red Hat's
 * 1b36 IDs belong to QEMU's devices; Linux has no quirk or driver keyed on
 * 0d57, and lspci shows a plain "Host bridge". */
#define PCI_HOST_VENDOR 0x8086
#define PCI_HOST_DEVICE 0x0d57

/* Standard config header offsets and bits (PCI Local Bus 3.0 §6). */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_COMMAND_IO 0x1
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS 0x06
#define PCI_STATUS_INTERRUPT 0x08
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_CLASS_REVISION 0x08
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d
#define PCI_CAP_ID_MSIX 0x11
#define PCI_CAP_ID_VNDR 0x09
#define PCI_MSIX_FLAGS_ENABLE 0x8000
#define PCI_MSIX_FLAGS_MASKALL 0x4000
#define PCI_MSIX_ENTRY_MASKED 0x1

enum pci_bar_type {
	PCI_BAR_NONE = 0,
	PCI_BAR_MEM32,
	PCI_BAR_MEM64, /* takes two BAR slots: i and i+1 */
	PCI_BAR_IO,
};

struct pci_bar_info {
	enum pci_bar_type type;
	uint64_t size; /* power of two; >= 16 for memory (tarn uses >= 4 KiB), >= 4 for I/O */
	bool prefetchable;
};

struct pci_device_info {
	uint16_t vendor, device;
	uint16_t subsys_vendor, subsys_id;
	uint32_t class_code; /* 24 bits: class, subclass, prog-if */
	uint8_t revision;
	uint8_t irq_pin; /* 0: no INTx; 1..4: INTA#..INTD# */
	struct pci_bar_info bars[6];
	/* MSI-X: vectors 1..2048 in BAR msix_bar, which must be PCI_BAR_NONE
	 * in bars[]: the root sizes it and owns the table and PBA there. */
	unsigned msix_vectors;
	int msix_bar;
};

struct pci_device_ops {
	/* Accesses to the device's own BARs; off is relative to the BAR. */
	void (*bar_read)(void *opaque, int bar, uint64_t off, void *data, unsigned len);
	void (*bar_write)(void *opaque, int bar, uint64_t off, const void *data, unsigned len);
	/* Optional: called after a config-space write was applied (root
	 * lock held for writing): off/len as the guest wrote. */
	void (*config_written)(void *opaque, unsigned off, unsigned len);
};

struct pci_msix_entry {
	uint32_t addr_lo, addr_hi, data, ctrl;
};

struct pci_device {
	struct pci_root *root;
	int slot;
	const struct pci_device_ops *ops;
	void *opaque;
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];   /* bits the guest may write */
	uint8_t w1cmask[PCI_CFG_SIZE]; /* bits a 1 clears */
	struct pci_bar_info bars[6];
	uint64_t bar_addr[6];	/* decoded address, valid when bar_on */
	bool bar_on[6];
	uint8_t cap_end;	/* next free byte for capabilities */
	uint8_t cap_last;	/* offset of the last capability, 0 for none */
	bool intx_level;	/* the device's INTx input */
	bool intx_driven;	/* what we contribute to the GSI */
	bool intx_disabled;	/* command bit 10, cached under the root's intx_lock */
	/* MSI-X */
	unsigned msix_n;
	int msix_bar;
	uint8_t msix_cap;
	uint32_t msix_pba_off;
	struct pci_msix_entry *msix_table;
	uint64_t *msix_pba;
	bool msix_enabled, msix_masked; /* control bits, cached under msix_lock */
	struct vm_irqfd *msix_irqfd;	/* per vector, where the backend has irqfds */
	uint64_t msix_sent_irqfd, msix_sent_ioctl; /* messages sent, by path */
	pthread_mutex_t msix_lock;
};

struct pci_root {
	const struct devctx *ctx;
	pthread_rwlock_t lock;
	struct pci_device *slots[PCI_MAX_SLOTS];
	struct pci_device host;
	uint32_t cf8;
	uint64_t mmio_next; /* BAR allocators */
	uint32_t io_next;
	pthread_mutex_t intx_lock;
	unsigned intx_count[PCI_INTX_LINES]; /* asserted devices per swizzled GSI */
};

/* Create the root on vm's buses. */
int pci_root_init(struct pci_root *root, const struct devctx *ctx) __attribute__((warn_unused_result));
void pci_root_destroy(struct pci_root *root);

/* Put a device in the first free slot (1..31), size and place its BARs,
 * build its MSI-X capability. *out stays owned by the root. 0, -ENOSPC (no
 * slot or no window space), -EINVAL (bad info), -ENOMEM. */
int pci_register_device(struct pci_root *root, const struct pci_device_ops *ops, void *opaque,
			const struct pci_device_info *info, struct pci_device **out)
	__attribute__((warn_unused_result));

/* Append a capability: id, next pointer, then len bytes of body (read-only
 * unless the caller widens dev->wmask). Returns its config offset, or 0 when
 * it does not fit in the first 256 bytes. Call before the guest runs. */
unsigned pci_add_capability(struct pci_device *dev, uint8_t id, const void *body, unsigned len);

/* Config-space accesses as a guest makes them: reg within the device's
 * 4 KiB, len 1..4, any alignment. Exposed for tests and ports. */
uint32_t pci_config_read(struct pci_root *root, int slot, int fn, unsigned reg, unsigned len);
void pci_config_write(struct pci_root *root, int slot, int fn, unsigned reg, unsigned len, uint32_t val);

/* Raise a device's MSI-X vector: delivered now, or left pending in the PBA
 * while masked. -ENOTSUP when MSI-X is not enabled (use INTx), -EINVAL for a
 * bad vector. Any thread. */
int pci_msix_notify(struct pci_device *dev, unsigned vector);

/* Drive the device's INTx pin (level). Any thread. */
void pci_set_irq(struct pci_device *dev, bool level);

/* The GSI a slot's pin reaches (the swizzle above). */
unsigned pci_intx_gsi(int slot, unsigned pin);

#endif
