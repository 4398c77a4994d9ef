/* A bzImage's compressed payload (the kernel ELF, vmlinux.bin), unpacked
 * on the host so that the guest does not run the kernel's decompressor --
 * on the emulator backend that saves seconds per boot, as booting an
 * uncompressed vmlinux does for Firecracker.
 *
 * Formats: LZ4 in the "legacy" frame format the kernel builds use (magic
 * 0x184c2102, blocks of at most 8 MiB each with a 4-byte compressed size,
 * optionally followed by the kernel's 4-byte uncompressed-size trailer).
 * Other payloads (gzip, xz, zstd, ...) are left to the guest. */
#ifndef TARN_X86_KPAYLOAD_H
#define TARN_X86_KPAYLOAD_H

#include <stddef.h>
#include <stdint.h>

/* Unpack payload[0, len) into a malloc'd buffer of at most max_out bytes.
 * 0 with *out and *out_len set; -ENOTSUP when the format is not one we unpack
 * (the guest's decompressor will); -EINVAL when it is but the data is
 * corrupt or truncated; -E2BIG past max_out; -ENOMEM. */
int kpayload_unpack(const uint8_t *payload, size_t len, size_t max_out, uint8_t **out,
		    size_t *out_len) __attribute__((warn_unused_result));

#endif
