/* A small builder for ACPI Machine Language (AML) byte code, enough to write
 * a DSDT by hand: scopes, devices, named objects, integers, strings, EISA
 * IDs, packages, buffers and resource templates, and methods that return a
 * constant. Encodings follow ACPI 6.5 §20.2 (AML grammar) and §6.4 (resource
 * descriptors).
 *
 * Usage: the builder is a byte stream with a stack of open blocks. A block
 * that carries a PkgLength (Scope, Device, Method, Package, Buffer) is opened
 * with aml_*_begin() and closed with aml_end(); its PkgLength is computed on
 * close, so callers never count bytes.
 *
 *	aml_scope_begin(a, "\\_SB");
 *	  aml_device_begin(a, "COM1");
 *	    aml_name(a, "_HID"); aml_eisaid(a, "PNP0501");
 *	    aml_name(a, "_UID"); aml_int(a, 1);
 *	  aml_end(a);
 *	aml_end(a);
 *	err = aml_finish(a);
 *
 * Emitters return nothing: the first failure (bad name, out of memory, too
 * deep, a descriptor outside a resource template, ...) is recorded and every
 * later call does nothing. aml_finish() reports it, so one check at the end
 * covers a whole table. */
#ifndef TARN_AML_H
#define TARN_AML_H

#include <stddef.h>
#include <stdint.h>

#define AML_MAX_DEPTH 16

struct aml_block {
	size_t start;	 /* where the PkgLength goes: just after the opcode */
	unsigned kind;	 /* enum aml_block_kind in aml.c */
	unsigned nr_elems; /* packages: elements emitted directly inside */
};

struct aml {
	uint8_t *buf;
	size_t len;
	size_t cap;
	struct aml_block open[AML_MAX_DEPTH];
	int depth;
	/* A Name() or Return() was emitted and its object has not been:
	 * data objects are legal only then or as package elements. */
	int want_object;
	int err; /* first error, 0 while all is well */
};

void aml_init(struct aml *a);
void aml_free(struct aml *a);

/* 0 when every block is closed and no emitter failed, else the first -errno
 * (-EINVAL for misuse, -ENOMEM, -E2BIG for sizes AML cannot encode). */
int aml_finish(struct aml *a) __attribute__((warn_unused_result));

/* Name strings: "\\_SB", "_SB.COM1", "^PCI0", "COM1". Each segment is 1-4
 * characters [A-Z0-9_], not starting with a digit, padded with '_'. */

/* Blocks, closed by aml_end(). */
void aml_scope_begin(struct aml *a, const char *name);
void aml_device_begin(struct aml *a, const char *name);
/* nargs 0..7; serialized methods take a mutex in the interpreter. */
void aml_method_begin(struct aml *a, const char *name, unsigned nargs, int serialized);
void aml_package_begin(struct aml *a); /* at most 255 elements */
void aml_buffer_begin(struct aml *a);  /* raw bytes via aml_raw() */
void aml_end(struct aml *a);

/* Name(name, <next data object>): the caller emits the object right after. */
void aml_name(struct aml *a, const char *name);
/* Return(<next term>), for methods that return a constant. */
void aml_return(struct aml *a);

/* Data objects. Integers use the shortest encoding (Zero, One, Ones, or a
 * Byte/Word/DWord/QWord constant). */
void aml_int(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s); /* ASCII 0x01..0x7f */
/* EisaId("PNP0501"): three letters A-Z, four hex digits. */
void aml_eisaid(struct aml *a, const char *id);
void aml_buffer(struct aml *a, const void *data, size_t len);

/* Raw bytes appended as they are (inside aml_buffer_begin blocks, or for
 * opcodes this builder does not know yet). */
void aml_raw(struct aml *a, const void *data, size_t len);

/* Compressed EISA ID as the 32-bit value AML stores (ACPI 6.5 §6.1.5), or 0
 * when id is malformed. */
uint32_t aml_eisaid_value(const char *id);

/* ResourceTemplate() { ... }: a Buffer of resource descriptors closed by an
 * End Tag. Descriptors may only appear between these two calls. */
void aml_rt_begin(struct aml *a);
void aml_rt_end(struct aml *a);
/* IO(Decode16 or Decode10, min, max, align, len) — ACPI 6.5 §6.4.2.5 */
void aml_rt_io(struct aml *a, int decode16, uint16_t min, uint16_t max, uint8_t align,
	       uint8_t len);
/* IRQNoFlags() { irqs in mask } — ACPI 6.5 §6.4.2.1, the 2-byte form
 * (edge-triggered, active-high, exclusive). */
void aml_rt_irq_noflags(struct aml *a, uint16_t irq_mask);
/* Memory32Fixed(ReadWrite or ReadOnly, base, len) — ACPI 6.5 §6.4.3.4 */
void aml_rt_mem32_fixed(struct aml *a, int writable, uint32_t base, uint32_t len);

/* Address Space Descriptors — ACPI 6.5 §6.4.3.5: WordBusNumber/WordIO
 * (bits 16), DWordMemory (32), QWordMemory (64), as a ResourceProducer
 * (a bridge window) with fixed minimum and maximum, positive decode,
 * granularity 0 and no translation: [min, min + len). type_flags is the
 * type-specific byte (memory: bit 0 read-write, bits 2:1 cacheability;
 * I/O: 3 = entire range). */
#define AML_ADDR_MEM 0
#define AML_ADDR_IO 1
#define AML_ADDR_BUS 2
void aml_rt_addr_space(struct aml *a, unsigned bits, uint8_t type, uint8_t type_flags,
		       uint64_t min, uint64_t len);

/* PkgLength encoding of a block whose content (everything after the
 * PkgLength itself) is content_len bytes long. Writes 1-4 bytes into out and
 * returns how many, or 0 when the length does not fit in 28 bits. Exposed for
 * tests. */
unsigned aml_pkglen_encode(size_t content_len, uint8_t out[4]);

#endif
