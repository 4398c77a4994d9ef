/* Micro-guest runtime: ucall, the IDT, a few libc functions gcc may call. */
#include "guest.h"

void ucall(uint32_t cmd, uint32_t line, const char *file, const char *msg, uint64_t a0,
	   uint64_t a1, uint64_t a2, uint64_t a3)
{
	struct ucall uc;
	unsigned long n;

	memset(&uc, 0, sizeof(uc));
	uc.cmd = cmd;
	uc.line = line;
	uc.args[0] = a0;
	uc.args[1] = a1;
	uc.args[2] = a2;
	uc.args[3] = a3;
	/* Keep the file's last component: host messages stay short. */
	for (const char *p = file; *p; p++)
		if (*p == '/')
			file = p + 1;
	n = strlen(file);
	memcpy(uc.file, file, n < sizeof(uc.file) - 1 ? n : sizeof(uc.file) - 1);
	n = strlen(msg);
	memcpy(uc.msg, msg, n < sizeof(uc.msg) - 1 ? n : sizeof(uc.msg) - 1);
	outl(UCALL_PORT, (uint32_t)(uintptr_t)&uc);
	/* An abort or done never returns: the host stops the VM. */
	if (cmd == UCALL_ABORT || cmd == UCALL_DONE)
		for (;;)
			hlt();
}

void guest_start(unsigned cpu, uint64_t boot_arg);
void guest_start(unsigned cpu, uint64_t boot_arg)
{
	guest_main(cpu, boot_arg);
	GUEST_DONE();
}

unsigned guest_apic_id(void)
{
	uint32_t a, b, c, d;

	cpuid(1, 0, &a, &b, &c, &d);
	return b >> 24;
}

/* ---- IDT ---- */

struct idt_gate {
	uint16_t off_lo, sel;
	uint8_t ist, type;
	uint16_t off_mid;
	uint32_t off_hi, zero;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));
static irq_handler_t handlers[256];
extern const uint64_t isr_table[256];

void idt_set_handler(unsigned vector, irq_handler_t h)
{
	handlers[vector & 255] = h;
}

void idt_install(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = { sizeof(idt) - 1, (uint64_t)(uintptr_t)idt };
	uint16_t cs;

	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	for (int i = 0; i < 256; i++) {
		uint64_t a = isr_table[i];

		idt[i] = (struct idt_gate){ (uint16_t)a, cs, 0, 0x8e, (uint16_t)(a >> 16),
					    (uint32_t)(a >> 32), 0 };
	}
	__asm__ volatile("lidt %0" ::"m"(idtr));
}

void isr_dispatch(struct irq_frame *f);
void isr_dispatch(struct irq_frame *f)
{
	irq_handler_t h = handlers[f->vector & 255];

	if (h)
		h(f);
	else
		ucall(UCALL_ABORT, 0, "idt", "unexpected exception or interrupt", f->vector,
		      f->error, f->rip, 0);
}

/* ---- libc ---- */

void *memset(void *d, int c, unsigned long n)
{
	unsigned char *p = d;

	while (n--)
		*p++ = (unsigned char)c;
	return d;
}

void *memcpy(void *d, const void *s, unsigned long n)
{
	unsigned char *p = d;
	const unsigned char *q = s;

	while (n--)
		*p++ = *q++;
	return d;
}

int memcmp(const void *a, const void *b, unsigned long n)
{
	const unsigned char *p = a, *q = b;

	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

unsigned long strlen(const char *s)
{
	unsigned long n = 0;

	while (s[n])
		n++;
	return n;
}
