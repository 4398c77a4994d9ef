/* The vhost-user protocol (QEMU's docs/interop/vhost-user.rst): a front
 * end (the VMM that owns the virtio device and guest memory) hands a back
 * end (tarn's switch) the device's rings over a Unix socket: guest memory
 * as file descriptors to map, each ring's addresses and position, and an
 * eventfd each way per ring for kicks and interrupts. Messages are a
 * 12-byte header (request, flags, payload size) and a payload, with file
 * descriptors as SCM_RIGHTS. What both ends here share: the messages tarn
 * uses, and sending and receiving them. Everything received is hostile
 * input: sizes, counts and indices are checked by vu_recv and the
 * handlers. */
#ifndef TARN_VHOST_USER_H
#define TARN_VHOST_USER_H

#include <stddef.h>
#include <stdint.h>

enum vu_request {
	VU_GET_FEATURES = 1,
	VU_SET_FEATURES = 2,
	VU_SET_OWNER = 3,
	VU_RESET_OWNER = 4,
	VU_SET_MEM_TABLE = 5,
	VU_SET_LOG_BASE = 6,
	VU_SET_LOG_FD = 7,
	VU_SET_VRING_NUM = 8,
	VU_SET_VRING_ADDR = 9,
	VU_SET_VRING_BASE = 10,
	VU_GET_VRING_BASE = 11,
	VU_SET_VRING_KICK = 12,
	VU_SET_VRING_CALL = 13,
	VU_SET_VRING_ERR = 14,
	VU_GET_PROTOCOL_FEATURES = 15,
	VU_SET_PROTOCOL_FEATURES = 16,
	VU_GET_QUEUE_NUM = 17,
	VU_SET_VRING_ENABLE = 18,
	VU_SEND_RARP = 19,
	VU_NET_SET_MTU = 20,
};

#define VU_VERSION 1u
#define VU_FLAG_REPLY (1u << 2)
#define VU_FLAG_NEED_REPLY (1u << 3)
#define VU_F_PROTOCOL_FEATURES 30 /* a virtio feature bit: protocol features exist */
#define VU_PROTOCOL_F_REPLY_ACK 3
#define VU_VRING_IDX_MASK 0xffu
#define VU_VRING_NOFD (1u << 8) /* SET_VRING_KICK/CALL: no descriptor sent */
#define VU_MAX_REGIONS 8
#define VU_MAX_FDS 8

struct vu_region {
	uint64_t gpa, size, uaddr, mmap_offset;
};

struct vu_msg {
	uint32_t request, flags, size;
	union {
		uint64_t u64;
		struct {
			uint32_t index, num;
		} state;
		struct {
			uint32_t index, flags;
			uint64_t desc, used, avail, log; /* front end's addresses */
		} addr;
		struct {
			uint32_t nregions, padding;
			struct vu_region regions[VU_MAX_REGIONS];
		} mem;
		uint8_t raw[256];
	};
} __attribute__((packed));

#define VU_HDR_SIZE 12u

/* Send msg (its header and msg->size bytes) with nfds descriptors. 0 or
 * -errno. */
int vu_send(int sock, const struct vu_msg *msg, const int *fds, unsigned nfds);

/* Receive one message into msg, its descriptors into fds[] (*nfds of
 * them, at most VU_MAX_FDS; the caller closes them). 0, -EPIPE (the peer
 * is gone), -EPROTO (a bad header: a version not 1, a payload larger than
 * the message holds, more descriptors than allowed: all received ones
 * closed), or -errno. */
int vu_recv(int sock, struct vu_msg *msg, int *fds, unsigned *nfds);

/* A request's name, for logs. */
const char *vu_request_name(uint32_t request);

#endif
