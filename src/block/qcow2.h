/* qcow2 disk images (QEMU's docs/interop/qcow2.txt), version 2 and 3, read
 * and written, with a backing file (raw or qcow2) under them.
 *
 * What it does: 16-bit refcounts, any cluster size from 512 bytes to 2 MiB,
 * clusters allocated at the end of the file with their refcounts kept
 * right (qemu-img check finds nothing to say), copy-on-write from the
 * backing file on a partial write, v3 zero clusters (write-zeroes and
 * discard: the host cluster is punched out and kept, allocated, as QEMU
 * does with its preallocated zero clusters), zlib-compressed clusters
 * read (and written over as normal ones). Refused with the reason at open:
 * encryption, an external data file, extended L2 entries, zstd, a refcount
 * width other than 16, an image left dirty or marked corrupt (qemu-img
 * check -r all repairs it), and, for writing, internal snapshots.
 * Not done: growing the refcount table (one cluster of it covers 16 TiB of
 * file at the default 64 KiB clusters; an image that would outgrow its
 * table gets -ENOSPC), freeing clusters for reuse (a discarded cluster's
 * space goes back to the host file system through the punched hole).
 *
 * Thread safety: any number of threads may read and write at once; lookups
 * and allocations take the image's lock, data moves outside it where the
 * cluster is already the image's own. */
#ifndef TARN_QCOW2_H
#define TARN_QCOW2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct qcow2;

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */

/* Whether the file open on fd starts like a qcow2 image. */
bool qcow2_probe(int fd);

/* Open the image on fd (the caller keeps fd open until qcow2_close, and
 * opened it read-only for ro). Its backing file, if any, is opened here,
 * read-only, relative to the directory of path. 0, or -errno with the
 * reason in err. */
int qcow2_open(struct qcow2 **out, int fd, const char *path, bool ro, char *err, size_t err_len)
	__attribute__((warn_unused_result));
void qcow2_close(struct qcow2 *q);

/* The size the guest sees, in bytes. */
uint64_t qcow2_size(const struct qcow2 *q);

/* Read or write the guest's bytes [off, off + len) to or from iov[0..n)
 * (len is the iovecs' total). 0 or -errno (-EIO beyond the end). */
int qcow2_preadv(struct qcow2 *q, const struct iovec *iov, int n, uint64_t off);
int qcow2_pwritev(struct qcow2 *q, const struct iovec *iov, int n, uint64_t off);
/* The range reads as zeros from now on (whole clusters become zero
 * clusters, the rest is written with zeros). */
int qcow2_write_zeroes(struct qcow2 *q, uint64_t off, uint64_t len);
/* Everything written so far on stable storage. */
int qcow2_flush(struct qcow2 *q);

/* Create a new image at path (which must not exist) of size bytes, 64 KiB
 * clusters, version 3; over backing (NULL: none; its size is taken when
 * size is 0), named in the image as given. 0, or -errno with the reason. */
int qcow2_create(const char *path, uint64_t size, const char *backing, char *err, size_t err_len)
	__attribute__((warn_unused_result));

/* Grow the image open on fd (nobody else's) to size bytes: its header's
 * size, and its L1 table's length within the clusters it has (from 64 KiB
 * clusters, 4 TiB). 0, or -errno with the reason. */
int qcow2_grow(int fd, uint64_t size, char *err, size_t err_len) __attribute__((warn_unused_result));

#endif
