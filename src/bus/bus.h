/* Port-I/O and MMIO dispatch. Devices register address ranges at VM set-up;
 * after the VM starts the tables are read-only, so lookups from vCPU threads
 * take no lock. Each device serializes its own state. */
#ifndef TARN_BUS_H
#define TARN_BUS_H

#include <stdbool.h>
#include <stdint.h>

struct bus_ops {
	/* off is relative to the registered base; len is 1, 2, 4 or 8.
	 * read fills data[0..len); unused bytes are preset to 0xff. */
	void (*read)(void *opaque, uint64_t off, void *data, unsigned len);
	void (*write)(void *opaque, uint64_t off, const void *data, unsigned len);
};

struct bus_range {
	uint64_t base;
	uint64_t len;
	const struct bus_ops *ops;
	void *opaque;
	const char *name;
};

struct bus {
	const char *name; /* "pio" or "mmio", for log lines */
	struct bus_range *ranges; /* sorted by base, non-overlapping */
	int nr;
	int cap;
};

void bus_init(struct bus *bus, const char *name);
void bus_destroy(struct bus *bus);

/* 0, -EINVAL (empty/overflowing range or a NULL op), -EEXIST (overlap), -ENOMEM. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque, const char *name) __attribute__((warn_unused_result));

/* Dispatch one access. Returns 0, or -ENOENT when nothing claims addr (reads
 * then return all-ones, writes are dropped) or when the access straddles the
 * end of a range. */
int bus_access(struct bus *bus, uint64_t addr, void *data, unsigned len, bool is_write);

const struct bus_range *bus_find(const struct bus *bus, uint64_t addr);

#endif
