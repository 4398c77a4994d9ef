/* AML byte-code builder. Grammar references are to ACPI 6.5 §20.2; resource
 * descriptors to §6.4. The tables this produces are read by the guest's AML
 * interpreter, so every encoding here must be one iasl would also produce:
 * tests/unit/test_acpi.c round-trips the DSDT through `iasl -d`. */
#include "arch/x86/aml.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Opcodes, ACPI 6.5 §20.3 (AML byte stream byte values). */
#define AML_ZERO_OP 0x00
#define AML_ONE_OP 0x01
#define AML_NAME_OP 0x08
#define AML_BYTE_PREFIX 0x0a
#define AML_WORD_PREFIX 0x0b
#define AML_DWORD_PREFIX 0x0c
#define AML_STRING_PREFIX 0x0d
#define AML_QWORD_PREFIX 0x0e
#define AML_SCOPE_OP 0x10
#define AML_BUFFER_OP 0x11
#define AML_PACKAGE_OP 0x12
#define AML_METHOD_OP 0x14
#define AML_DUAL_NAME_PREFIX 0x2e
#define AML_MULTI_NAME_PREFIX 0x2f
#define AML_EXT_OP_PREFIX 0x5b
#define AML_DEVICE_OP 0x82 /* after AML_EXT_OP_PREFIX */
#define AML_ROOT_CHAR '\\'
#define AML_PARENT_PREFIX_CHAR '^'
#define AML_NULL_NAME 0x00
#define AML_RETURN_OP 0xa4
#define AML_ONES_OP 0xff

/* Small resource descriptor tags, ACPI 6.5 §6.4.2: byte 0 is
 * (type << 3) | length. */
#define RES_IRQ_NOFLAGS 0x22  /* type 0x04, 2 bytes */
#define RES_IO 0x47	      /* type 0x08, 7 bytes */
#define RES_END_TAG 0x79      /* type 0x0f, 1 byte */
/* Large descriptors, §6.4.3: tag byte then a 16-bit length. */
#define RES_MEM32_FIXED 0x86

enum aml_block_kind {
	BLK_SCOPE,   /* Scope, Device, Method: PkgLength only */
	BLK_PACKAGE, /* PkgLength NumElements */
	BLK_BUFFER,  /* PkgLength BufferSize */
	BLK_RT,	     /* a Buffer holding resource descriptors */
	BLK_METHOD,  /* like BLK_SCOPE, but Return is allowed inside */
};

/* The largest PkgLength value: 4 bits + 3 bytes (§20.2.4). */
#define PKGLEN_MAX 0x0fffffffu

/* Set only at the first failure: later errors are usually consequences. */
static void fail(struct aml *a, int err)
{
	if (!a->err)
		a->err = err;
}

/* Make room for n more bytes; false (with a->err set) when we can't. */
static bool reserve(struct aml *a, size_t n)
{
	if (a->err)
		return false;
	if (n > PKGLEN_MAX || a->len + n > PKGLEN_MAX) {
		fail(a, -E2BIG); /* no table can hold it anyway */
		return false;
	}
	if (a->len + n <= a->cap)
		return true;
	size_t cap = a->cap ? a->cap : 256;
	while (cap < a->len + n)
		cap *= 2;
	uint8_t *nb = realloc(a->buf, cap);
	if (!nb) {
		fail(a, -ENOMEM);
		return false;
	}
	a->buf = nb;
	a->cap = cap;
	return true;
}

static void put(struct aml *a, const void *p, size_t n)
{
	if (!reserve(a, n))
		return;
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

static void put8(struct aml *a, uint8_t b)
{
	put(a, &b, 1);
}

static void put_le(struct aml *a, uint64_t v, unsigned bytes)
{
	uint8_t b[8];
	for (unsigned i = 0; i < bytes; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	put(a, b, bytes);
}

static struct aml_block *top(struct aml *a)
{
	return a->depth ? &a->open[a->depth - 1] : NULL;
}

void aml_init(struct aml *a)
{
	memset(a, 0, sizeof(*a));
}

void aml_free(struct aml *a)
{
	free(a->buf);
	memset(a, 0, sizeof(*a));
}

unsigned aml_pkglen_encode(size_t content_len, uint8_t out[4])
{
	/* The encoded value counts the PkgLength bytes themselves, so the
	 * size class is chosen with them included. A 1-byte PkgLength holds
	 * 6 bits; longer ones hold 4 bits in the lead byte and 8 in each
	 * following byte, the lead byte's top two bits saying how many
	 * follow (§20.2.4). */
	for (unsigned n = 1; n <= 4; n++) {
		if (content_len > PKGLEN_MAX - n)
			return 0;
		size_t total = content_len + n;
		if (n == 1) {
			if (total <= 0x3f) {
				out[0] = (uint8_t)total;
				return 1;
			}
			continue;
		}
		if (total >> (4 + 8 * (n - 1)))
			continue;
		out[0] = (uint8_t)(((n - 1) << 6) | (total & 0x0f));
		for (unsigned i = 1; i < n; i++)
			out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
		return n;
	}
	return 0;
}

/* Integer encoding without touching the builder (BufferSize needs it too). */
static unsigned int_encode(uint64_t v, uint8_t out[9])
{
	if (v == 0) {
		out[0] = AML_ZERO_OP;
		return 1;
	}
	if (v == 1) {
		out[0] = AML_ONE_OP;
		return 1;
	}
	if (v == UINT64_MAX) {
		/* Ones is all 64 bits only in tables of revision >= 2; ours
		 * are (acpi.c builds the DSDT with revision 2). */
		out[0] = AML_ONES_OP;
		return 1;
	}
	unsigned bytes;
	if (v <= 0xff) {
		out[0] = AML_BYTE_PREFIX;
		bytes = 1;
	} else if (v <= 0xffff) {
		out[0] = AML_WORD_PREFIX;
		bytes = 2;
	} else if (v <= 0xffffffffu) {
		out[0] = AML_DWORD_PREFIX;
		bytes = 4;
	} else {
		out[0] = AML_QWORD_PREFIX;
		bytes = 8;
	}
	for (unsigned i = 0; i < bytes; i++)
		out[1 + i] = (uint8_t)(v >> (8 * i));
	return 1 + bytes;
}

static bool seg_char_ok(char c, bool first)
{
	if ((c >= 'A' && c <= 'Z') || c == '_')
		return true;
	return !first && c >= '0' && c <= '9';
}

/* NameString, §20.2.2: [RootChar | ParentPrefixChar*] NamePath, where
 * NamePath is NameSeg, DualNamePath, MultiNamePath or NullName. */
static void put_namestring(struct aml *a, const char *name)
{
	if (a->err)
		return;
	if (!name) {
		fail(a, -EINVAL);
		return;
	}
	const char *p = name;
	if (*p == AML_ROOT_CHAR) {
		put8(a, AML_ROOT_CHAR);
		p++;
	} else {
		while (*p == AML_PARENT_PREFIX_CHAR) {
			put8(a, AML_PARENT_PREFIX_CHAR);
			p++;
		}
	}
	if (*p == '\0') {
		/* "\" alone names the root; "^" alone is meaningless. */
		if (p == name || name[0] != AML_ROOT_CHAR) {
			fail(a, -EINVAL);
			return;
		}
		put8(a, AML_NULL_NAME);
		return;
	}

	char segs[255][4];
	unsigned nsegs = 0;
	while (*p) {
		if (nsegs == 255) {
			fail(a, -EINVAL);
			return;
		}
		unsigned n = 0;
		while (*p && *p != '.') {
			if (n == 4 || !seg_char_ok(*p, n == 0)) {
				fail(a, -EINVAL);
				return;
			}
			segs[nsegs][n++] = *p++;
		}
		if (n == 0) { /* "", "A..B" or a trailing dot */
			fail(a, -EINVAL);
			return;
		}
		/* Short names are padded with '_': "_SB" is "_SB_". */
		while (n < 4)
			segs[nsegs][n++] = '_';
		nsegs++;
		if (*p == '.') {
			p++;
			if (*p == '\0') {
				fail(a, -EINVAL);
				return;
			}
		}
	}
	if (nsegs == 2) {
		put8(a, AML_DUAL_NAME_PREFIX);
	} else if (nsegs > 2) {
		put8(a, AML_MULTI_NAME_PREFIX);
		put8(a, (uint8_t)nsegs);
	}
	put(a, segs, 4 * (size_t)nsegs);
}

/* Called before emitting a data object: checks it has a place to go and
 * counts it when it is a package element. */
static void begin_object(struct aml *a)
{
	if (a->err)
		return;
	struct aml_block *b = top(a);
	if (a->want_object) {
		a->want_object = false;
		return;
	}
	if (b && b->kind == BLK_PACKAGE) {
		if (b->nr_elems == 255) {
			fail(a, -E2BIG); /* NumElements is one byte */
			return;
		}
		b->nr_elems++;
		return;
	}
	/* A bare constant in a Scope or Device body is not a valid term. */
	fail(a, -EINVAL);
}

/* Statements (Name, Scope, Device, Method) belong in a term list, not in a
 * package or buffer, and not where an object is still owed. */
static bool in_term_list(struct aml *a)
{
	if (a->err)
		return false;
	struct aml_block *b = top(a);
	if (a->want_object || (b && b->kind != BLK_SCOPE && b->kind != BLK_METHOD)) {
		fail(a, -EINVAL);
		return false;
	}
	return true;
}

static void open_block(struct aml *a, unsigned kind)
{
	if (a->err)
		return;
	if (a->depth == AML_MAX_DEPTH) {
		fail(a, -E2BIG);
		return;
	}
	a->open[a->depth++] = (struct aml_block){ .start = a->len, .kind = kind };
}

void aml_scope_begin(struct aml *a, const char *name)
{
	if (!in_term_list(a))
		return;
	put8(a, AML_SCOPE_OP);
	open_block(a, BLK_SCOPE);
	put_namestring(a, name);
}

void aml_device_begin(struct aml *a, const char *name)
{
	if (!in_term_list(a))
		return;
	put8(a, AML_EXT_OP_PREFIX);
	put8(a, AML_DEVICE_OP);
	open_block(a, BLK_SCOPE);
	put_namestring(a, name);
}

void aml_method_begin(struct aml *a, const char *name, unsigned nargs, int serialized)
{
	if (!in_term_list(a))
		return;
	if (nargs > 7) {
		fail(a, -EINVAL);
		return;
	}
	put8(a, AML_METHOD_OP);
	open_block(a, BLK_METHOD);
	put_namestring(a, name);
	/* MethodFlags, §20.2.5.2: ArgCount bits 0-2, SerializeFlag bit 3,
	 * SyncLevel bits 4-7 (0). */
	put8(a, (uint8_t)(nargs | (serialized ? 0x08 : 0)));
}

void aml_package_begin(struct aml *a)
{
	begin_object(a);
	put8(a, AML_PACKAGE_OP);
	open_block(a, BLK_PACKAGE);
}

void aml_buffer_begin(struct aml *a)
{
	begin_object(a);
	put8(a, AML_BUFFER_OP);
	open_block(a, BLK_BUFFER);
}

/* Insert hdr at off, shifting the block's content up. */
static void insert(struct aml *a, size_t off, const uint8_t *hdr, size_t n)
{
	if (!reserve(a, n))
		return;
	memmove(a->buf + off + n, a->buf + off, a->len - off);
	memcpy(a->buf + off, hdr, n);
	a->len += n;
}

void aml_end(struct aml *a)
{
	if (a->err)
		return;
	struct aml_block *b = top(a);
	if (!b || a->want_object) {
		fail(a, -EINVAL);
		return;
	}
	if (b->kind == BLK_RT) {
		/* aml_rt_end() closes these: it owes the End Tag. */
		fail(a, -EINVAL);
		return;
	}
	size_t body = a->len - b->start;
	uint8_t hdr[4 + 9];
	size_t extra = 0;
	uint8_t ex[9];
	if (b->kind == BLK_PACKAGE) {
		ex[0] = (uint8_t)b->nr_elems; /* §20.2.5.4 DefPackage */
		extra = 1;
	} else if (b->kind == BLK_BUFFER) {
		extra = int_encode(body, ex); /* §20.2.5.4 DefBuffer */
	}
	unsigned pl = aml_pkglen_encode(body + extra, hdr);
	if (!pl) {
		fail(a, -E2BIG);
		return;
	}
	memcpy(hdr + pl, ex, extra);
	insert(a, b->start, hdr, pl + extra);
	a->depth--;
}

void aml_name(struct aml *a, const char *name)
{
	if (!in_term_list(a))
		return;
	put8(a, AML_NAME_OP);
	put_namestring(a, name);
	a->want_object = !a->err;
}

void aml_return(struct aml *a)
{
	if (a->err)
		return;
	struct aml_block *b = top(a);
	if (!b || b->kind != BLK_METHOD || a->want_object) {
		fail(a, -EINVAL);
		return;
	}
	put8(a, AML_RETURN_OP);
	a->want_object = true;
}

void aml_int(struct aml *a, uint64_t v)
{
	begin_object(a);
	uint8_t b[9];
	unsigned n = int_encode(v, b);
	put(a, b, n);
}

void aml_string(struct aml *a, const char *s)
{
	if (!s) {
		fail(a, -EINVAL);
		return;
	}
	for (const char *p = s; *p; p++) {
		/* AsciiCharList, §20.2.3: 0x01-0x7f. */
		if ((unsigned char)*p > 0x7f) {
			fail(a, -EINVAL);
			return;
		}
	}
	begin_object(a);
	put8(a, AML_STRING_PREFIX);
	put(a, s, strlen(s) + 1); /* NUL-terminated */
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

uint32_t aml_eisaid_value(const char *id)
{
	/* ACPI 6.5 §6.1.5 (_HID): three letters packed 5 bits each (A=1)
	 * into a big-endian 16-bit word, then the product number as four
	 * hex digits, also big-endian; AML stores the 32-bit result as a
	 * little-endian DWord. Uppercase only, as iasl requires. */
	if (!id || strlen(id) != 7)
		return 0;
	uint32_t v = 0;
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z')
			return 0;
		v = (v << 5) | (uint32_t)(id[i] - 0x40);
	}
	for (int i = 3; i < 7; i++) {
		int h = hexval(id[i]);
		if (h < 0)
			return 0;
		v = (v << 4) | (uint32_t)h;
	}
	return __builtin_bswap32(v);
}

void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v = aml_eisaid_value(id);
	if (!v) {
		fail(a, -EINVAL);
		return;
	}
	begin_object(a);
	/* Always a DWordConst, even when the value would fit a shorter
	 * encoding: that is what marks it as an EISA ID to disassemblers. */
	put8(a, AML_DWORD_PREFIX);
	put_le(a, v, 4);
}

void aml_buffer(struct aml *a, const void *data, size_t len)
{
	if (len && !data) {
		fail(a, -EINVAL);
		return;
	}
	aml_buffer_begin(a);
	aml_raw(a, data, len);
	aml_end(a);
}

void aml_raw(struct aml *a, const void *data, size_t len)
{
	if (len)
		put(a, data, len);
}

void aml_rt_begin(struct aml *a)
{
	aml_buffer_begin(a);
	struct aml_block *b = top(a);
	if (!a->err && b)
		b->kind = BLK_RT;
}

void aml_rt_end(struct aml *a)
{
	if (a->err)
		return;
	struct aml_block *b = top(a);
	if (!b || b->kind != BLK_RT) {
		fail(a, -EINVAL);
		return;
	}
	/* End Tag, §6.4.2.9: a checksum byte of 0 means "treat as valid",
	 * which is what iasl writes too. */
	put8(a, RES_END_TAG);
	put8(a, 0);
	b->kind = BLK_BUFFER;
	aml_end(a);
}

static bool in_rt(struct aml *a)
{
	if (a->err)
		return false;
	struct aml_block *b = top(a);
	if (!b || b->kind != BLK_RT) {
		fail(a, -EINVAL);
		return false;
	}
	return true;
}

void aml_rt_io(struct aml *a, int decode16, uint16_t min, uint16_t max, uint8_t align,
	       uint8_t len)
{
	if (!in_rt(a))
		return;
	if (min > max) {
		fail(a, -EINVAL);
		return;
	}
	/* I/O Port Descriptor, §6.4.2.5: information byte bit 0 = decodes
	 * 16 address bits (else 10). */
	uint8_t d[8] = {
		RES_IO,		    decode16 ? 1 : 0,	    (uint8_t)min, (uint8_t)(min >> 8),
		(uint8_t)max,	    (uint8_t)(max >> 8), align,	  len,
	};
	put(a, d, sizeof(d));
}

void aml_rt_irq_noflags(struct aml *a, uint16_t irq_mask)
{
	if (!in_rt(a))
		return;
	/* IRQ Descriptor without the flags byte, §6.4.2.1: implies
	 * edge-triggered, active-high, exclusive — the ISA default. */
	uint8_t d[3] = { RES_IRQ_NOFLAGS, (uint8_t)irq_mask, (uint8_t)(irq_mask >> 8) };
	put(a, d, sizeof(d));
}

void aml_rt_mem32_fixed(struct aml *a, int writable, uint32_t base, uint32_t len)
{
	if (!in_rt(a))
		return;
	/* 32-Bit Fixed Memory Range Descriptor, §6.4.3.4: tag, length 9,
	 * information (bit 0 = read-write), base, length. */
	uint8_t d[12] = { RES_MEM32_FIXED, 9, 0, writable ? 1 : 0 };
	for (int i = 0; i < 4; i++) {
		d[4 + i] = (uint8_t)(base >> (8 * i));
		d[8 + i] = (uint8_t)(len >> (8 * i));
	}
	put(a, d, sizeof(d));
}

void aml_rt_addr_space(struct aml *a, unsigned bits, uint8_t type, uint8_t type_flags,
		       uint64_t min, uint64_t len)
{
	/* Tags: Word 0x88, DWord 0x87, QWord 0x8A (large items); five
	 * fields of bits/8 bytes each: _GRA, _MIN, _MAX, _TRA, _LEN. */
	unsigned w = bits / 8;
	uint8_t tag = bits == 16 ? 0x88 : bits == 32 ? 0x87 : 0x8a;
	uint64_t f[5] = { 0, min, min + len - 1, 0, len };
	uint8_t d[3 + 3 + 5 * 8];
	size_t n = 0;

	if (!in_rt(a))
		return;
	if ((bits != 16 && bits != 32 && bits != 64) || !len ||
	    (bits < 64 && (min + len - 1) >> bits)) {
		fail(a, -EINVAL);
		return;
	}
	d[n++] = tag;
	d[n++] = (uint8_t)(3 + 5 * w); /* length after the 3-byte header */
	d[n++] = 0;
	d[n++] = type;
	d[n++] = 0x0c; /* _MAF, _MIF fixed; positive decode; producer */
	d[n++] = type_flags;
	for (int i = 0; i < 5; i++)
		for (unsigned k = 0; k < w; k++)
			d[n++] = (uint8_t)(f[i] >> (8 * k));
	put(a, d, n);
}

int aml_finish(struct aml *a)
{
	if (!a->err && (a->depth || a->want_object))
		fail(a, -EINVAL); /* a block left open or a Name without object */
	return a->err;
}
