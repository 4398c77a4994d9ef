/* Address-range dispatch. Ranges are kept sorted so a lookup is a binary
 * search; registration happens only while the VM is being built. */
#include "bus/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void bus_init(struct bus *bus, const char *name)
{
	memset(bus, 0, sizeof(*bus));
	bus->name = name;
}

void bus_destroy(struct bus *bus)
{
	free(bus->ranges);
	bus->ranges = NULL;
	bus->nr = bus->cap = 0;
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque, const char *name)
{
	int pos;

	/* A missing callback would be a NULL call on guest input: refuse it here. */
	if (!len || base + len - 1 < base || !ops || !ops->read || !ops->write)
		return -EINVAL;
	for (pos = 0; pos < bus->nr; pos++) {
		const struct bus_range *r = &bus->ranges[pos];

		if (base <= r->base + (r->len - 1) && r->base <= base + (len - 1))
			return -EEXIST;
		if (r->base > base)
			break;
	}
	for (int i = pos; i < bus->nr; i++) {
		const struct bus_range *r = &bus->ranges[i];

		if (base <= r->base + (r->len - 1) && r->base <= base + (len - 1))
			return -EEXIST;
	}
	if (bus->nr == bus->cap) {
		int cap = bus->cap ? bus->cap * 2 : 16;
		struct bus_range *n = realloc(bus->ranges, (size_t)cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		bus->ranges = n;
		bus->cap = cap;
	}
	memmove(&bus->ranges[pos + 1], &bus->ranges[pos], (size_t)(bus->nr - pos) * sizeof(bus->ranges[0]));
	bus->ranges[pos] = (struct bus_range){ base, len, ops, opaque, name };
	bus->nr++;
	return 0;
}

const struct bus_range *bus_find(const struct bus *bus, uint64_t addr)
{
	int lo = 0, hi = bus->nr - 1;

	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		const struct bus_range *r = &bus->ranges[mid];

		if (addr < r->base)
			hi = mid - 1;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

int bus_access(struct bus *bus, uint64_t addr, void *data, unsigned len, bool is_write)
{
	const struct bus_range *r = bus_find(bus, addr);

	if (!is_write)
		memset(data, 0xff, len);
	/* guest-controlled: addr and len; the whole access must fit the range. */
	if (!r || len == 0 || len > 8 || len - 1 > r->len - 1 - (addr - r->base))
		return -ENOENT;
	if (is_write)
		r->ops->write(r->opaque, addr - r->base, data, len);
	else
		r->ops->read(r->opaque, addr - r->base, data, len);
	return 0;
}
