/* The snapshot file's container (docs/snapshot.md): a header, then one
 * section per component (a vCPU, an interrupt controller, a device), each
 * length-prefixed and checksummed with CRC32C, in any order. Components
 * write their fields one by one, little-endian, through snap_buf, and read
 * them back through snap_cur, which never reads past a section's end. The
 * reader checks the whole file before any section is handed out, so a
 * corrupt snapshot is refused before anything is built from it.
 *
 * Guest memory is not in this file: it goes to a file of its own, so that
 * it can be mapped on restore. */
#ifndef TARN_SNAPFILE_H
#define TARN_SNAPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAP_MAGIC "TARNSNAP"
#define SNAP_VERSION 1
#define SNAP_HEADER_SIZE 32
#define SNAP_SECTION_HEADER_SIZE 24
#define SNAP_MAX_SECTIONS 4096
#define SNAP_MAX_SECTION (64u << 20) /* larger sections are refused */

/* A section's name: four ASCII characters, as SNAP_ID("VCPU"). */
#define SNAP_ID(s) ((uint32_t)(s)[0] | (uint32_t)(s)[1] << 8 | (uint32_t)(s)[2] << 16 | (uint32_t)(s)[3] << 24)

uint32_t crc32c(uint32_t crc, const void *data, size_t len);

/* ---- fields into a growing buffer ---- */

struct snap_buf {
	uint8_t *p;
	size_t len, cap;
	bool oom; /* an allocation failed: everything after is dropped */
};

void snap_buf_init(struct snap_buf *b);
void snap_buf_free(struct snap_buf *b);
void snap_put_u8(struct snap_buf *b, uint8_t v);
void snap_put_u16(struct snap_buf *b, uint16_t v);
void snap_put_u32(struct snap_buf *b, uint32_t v);
void snap_put_u64(struct snap_buf *b, uint64_t v);
void snap_put_bytes(struct snap_buf *b, const void *p, size_t n);

/* ---- fields out of a section ---- */

struct snap_cur {
	const uint8_t *p;
	size_t len, off;
	bool short_read; /* a get ran past the end: it read zeros */
};

void snap_cur_init(struct snap_cur *c, const void *p, size_t len);
uint8_t snap_get_u8(struct snap_cur *c);
uint16_t snap_get_u16(struct snap_cur *c);
uint32_t snap_get_u32(struct snap_cur *c);
uint64_t snap_get_u64(struct snap_cur *c);
void snap_get_bytes(struct snap_cur *c, void *p, size_t n);
/* Every field read and nothing left over: the section had the size its
 * version says. */
static inline bool snap_cur_done(const struct snap_cur *c)
{
	return !c->short_read && c->off == c->len;
}

/* ---- writing a file ---- */

struct snap_writer {
	int fd;
	uint64_t off;
	uint32_t nr;
	int err; /* the first write error, -errno */
};

/* Start a snapshot in fd (empty, seekable). 0 or -errno. */
int snap_write_begin(struct snap_writer *w, int fd) __attribute__((warn_unused_result));
/* Append one section: id, instance (which vCPU, device, ...), the
 * version of the section's own layout, and its fields. */
int snap_write_section(struct snap_writer *w, uint32_t id, uint32_t instance, uint32_t version,
		       const struct snap_buf *b) __attribute__((warn_unused_result));
/* Finish: the header with the count and length goes in last, then fsync.
 * 0 or the first error. */
int snap_write_end(struct snap_writer *w) __attribute__((warn_unused_result));

/* ---- reading a file ---- */

struct snap_section {
	uint32_t id, instance, version;
	const uint8_t *data;
	uint64_t len;
};

struct snap_reader {
	uint8_t *buf; /* the whole file */
	size_t size;
	struct snap_section *s;
	uint32_t nr;
};

/* Read and check a whole snapshot file: the header (magic, version,
 * section count, length, its CRC), then every section (bounds, CRC, no
 * id/instance twice). 0, or -EINVAL with what is wrong and where in err;
 * -errno for I/O. Nothing is kept on failure. */
int snap_read(struct snap_reader *r, int fd, char *err, size_t err_len) __attribute__((warn_unused_result));
void snap_reader_free(struct snap_reader *r);
/* The section (id, instance), or NULL. */
const struct snap_section *snap_find(const struct snap_reader *r, uint32_t id, uint32_t instance);

#endif
