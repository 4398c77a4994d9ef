/* The micro-guest runtime: ordinary C running in 64-bit mode on tarn's boot
 * page tables (identity map of 0-4 GiB), reporting to the host test through
 * the ucall port. Shared between guest and host: struct ucall. */
#ifndef TARN_GUEST_H
#define TARN_GUEST_H

#include <stdint.h>

#define UCALL_PORT 0xe8 /* a 4-byte write of the struct's address */

enum ucall_cmd {
	UCALL_SYNC = 1, /* a checkpoint: host may check args */
	UCALL_DONE,	/* the test passed on this vCPU */
	UCALL_ABORT,	/* GUEST_ASSERT failed */
	UCALL_PRINT,	/* a message for the log */
};

struct ucall {
	uint32_t cmd;
	uint32_t line;
	uint64_t args[4];
	char file[32];
	char msg[96];
};
_Static_assert(sizeof(struct ucall) == 168, "ucall layout shared with the host");

#ifndef TARN_HOST

#define GUEST_STACK_SIZE 16384
#define GUEST_MAX_CPUS 16

void ucall(uint32_t cmd, uint32_t line, const char *file, const char *msg, uint64_t a0,
	   uint64_t a1, uint64_t a2, uint64_t a3);

#define GUEST_SYNC(a0, a1) ucall(UCALL_SYNC, __LINE__, __FILE__, "", (a0), (a1), 0, 0)
#define GUEST_SYNC4(a0, a1, a2, a3) ucall(UCALL_SYNC, __LINE__, __FILE__, "", (a0), (a1), (a2), (a3))
#define GUEST_DONE() ucall(UCALL_DONE, __LINE__, __FILE__, "", 0, 0, 0, 0)
#define GUEST_PRINT(msg) ucall(UCALL_PRINT, __LINE__, __FILE__, (msg), 0, 0, 0, 0)
#define GUEST_ASSERT(c)                                                        \
	do {                                                                   \
		if (!(c))                                                      \
			ucall(UCALL_ABORT, __LINE__, __FILE__, #c, 0, 0, 0, 0); \
	} while (0)
/* Assert a == b and report both values on failure. */
#define GUEST_ASSERT_EQ(a, b)                                                  \
	do {                                                                   \
		uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);               \
		if (a_ != b_)                                                  \
			ucall(UCALL_ABORT, __LINE__, __FILE__, #a " == " #b, a_, b_, 0, 0); \
	} while (0)

/* Each test defines this; it runs on every vCPU that starts at the entry.
 * Returning reports UCALL_DONE. */
void guest_main(unsigned cpu, uint64_t boot_arg);

static inline void outb(uint16_t p, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(p)); }
static inline void outw(uint16_t p, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(p)); }
static inline void outl(uint16_t p, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(p)); }
static inline uint8_t inb(uint16_t p) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline uint16_t inw(uint16_t p) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline uint32_t inl(uint16_t p) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(p)); return v; }

static inline uint8_t mmio_read8(uint64_t a) { return *(volatile uint8_t *)a; }
static inline uint16_t mmio_read16(uint64_t a) { return *(volatile uint16_t *)a; }
static inline uint32_t mmio_read32(uint64_t a) { return *(volatile uint32_t *)a; }
static inline uint64_t mmio_read64(uint64_t a) { return *(volatile uint64_t *)a; }
static inline void mmio_write8(uint64_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline void mmio_write16(uint64_t a, uint16_t v) { *(volatile uint16_t *)a = v; }
static inline void mmio_write32(uint64_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline void mmio_write64(uint64_t a, uint64_t v) { *(volatile uint64_t *)a = v; }

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}
static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return (uint64_t)hi << 32 | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}
static inline uint64_t read_cr0(void) { uint64_t v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline uint64_t read_cr3(void) { uint64_t v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline uint64_t read_cr4(void) { uint64_t v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void write_cr3(uint64_t v) { __asm__ volatile("mov %0, %%cr3" ::"r"(v) : "memory"); }
static inline void sti(void) { __asm__ volatile("sti"); }
static inline void cli(void) { __asm__ volatile("cli"); }
static inline void hlt(void) { __asm__ volatile("hlt"); }
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }
static inline void pause(void) { __asm__ volatile("pause"); }
static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

/* This vCPU's initial APIC ID from CPUID (leaf 1, EBX[31:24]). */
unsigned guest_apic_id(void);

/* Interrupts: install the IDT (all 256 vectors) once per vCPU; handlers
 * are plain C functions of the vector. An exception with no handler is
 * reported as an abort. */
struct irq_frame {
	uint64_t vector, error, rip, cs, rflags, rsp, ss;
};
typedef void (*irq_handler_t)(struct irq_frame *f);
void idt_install(void);
void idt_set_handler(unsigned vector, irq_handler_t h);

/* LAPIC (xAPIC MMIO at its default base) */
#define LAPIC_BASE 0xfee00000ULL
#define LAPIC_ID 0x20
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0x0f0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_ICR 0x380
#define LAPIC_TIMER_CCR 0x390
#define LAPIC_TIMER_DCR 0x3e0
static inline uint32_t lapic_read(uint32_t reg) { return mmio_read32(LAPIC_BASE + reg); }
static inline void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }
static inline void lapic_enable(void) { lapic_write(LAPIC_SVR, 0x1ff); }
static inline void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }

#define IOAPIC_BASE 0xfec00000ULL
static inline void ioapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(IOAPIC_BASE, reg);
	mmio_write32(IOAPIC_BASE + 0x10, v);
}
static inline uint32_t ioapic_read(uint32_t reg)
{
	mmio_write32(IOAPIC_BASE, reg);
	return mmio_read32(IOAPIC_BASE + 0x10);
}

void *memset(void *d, int c, unsigned long n);
void *memcpy(void *d, const void *s, unsigned long n);
int memcmp(const void *a, const void *b, unsigned long n);
unsigned long strlen(const char *s);

#endif /* !TARN_HOST */
#endif
