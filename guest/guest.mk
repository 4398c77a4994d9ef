# tarn's default guest (see guest/README.md): a Debian cloud kernel and a
# busybox initramfs, fetched with apt-get and built by guest/build.sh.
# Included by the top-level Makefile (uses O and Q).

GUEST_DIR := $(O)/guest
GUEST_KERNEL := $(GUEST_DIR)/vmlinuz
GUEST_INITRD := $(GUEST_DIR)/initramfs.cpio
# Serial console on COM1 (ttyS0, 0x3f8); trust the TSC (no clocksource
# watchdog); on panic reboot at once (the VMM sees a reset and stops); skip
# the crypto API's boot-time self-tests (known-answer tests of every cipher,
# RSA and DH included: ~1 G instructions, which a micro-VM re-proving its
# CPU on every boot does not need -- about 20 s under tarn's interpreter,
# well under 1 s under QEMU's JIT).
GUEST_CMDLINE := console=ttyS0 tsc=reliable panic=-1 quiet cryptomgr.notests

# Both files come out of one run of build.sh; a second `make guest` does
# nothing until build.sh or init change (or an output is removed).
$(GUEST_KERNEL) $(GUEST_INITRD) &: guest/build.sh guest/init $(wildcard guest/tools/*.c)
	@$(if $(Q),echo "  GUEST   $(GUEST_DIR)")
	$(Q)guest/build.sh $(GUEST_DIR)

guest: $(GUEST_KERNEL) $(GUEST_INITRD)

# Boot it under QEMU (TCG without /dev/kvm, ~15 s) and check /init's contract.
guest-check: guest
	$(Q)guest/qemu-test.sh $(GUEST_DIR)

.PHONY: guest guest-check
