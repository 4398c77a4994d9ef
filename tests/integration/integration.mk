# Integration tests: shell scripts speaking TAP, run against $(O)/tarn.
INTEGRATION_TESTS := tests/integration/cli_errors.sh tests/integration/kvm_linux_uart.sh \
	tests/integration/emu_linux.sh tests/integration/virtio_rng.sh
INTEGRATION_TESTS += tests/integration/virtio_console.sh
INTEGRATION_TESTS += tests/integration/virtio_blk.sh
INTEGRATION_TESTS += tests/integration/virtio_net.sh
