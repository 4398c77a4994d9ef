# Integration tests: shell scripts speaking TAP, run against $(O)/tarn.
INTEGRATION_TESTS := tests/integration/cli_errors.sh \
	tests/integration/linux.sh tests/integration/virtio_rng.sh
INTEGRATION_TESTS += tests/integration/virtio_console.sh
INTEGRATION_TESTS += tests/integration/virtio_blk.sh
INTEGRATION_TESTS += tests/integration/virtio_net.sh tests/integration/ratelimit.py
INTEGRATION_TESTS += tests/integration/stop.sh
INTEGRATION_TESTS += tests/integration/api.py
INTEGRATION_TESTS += tests/integration/snapshot.sh tests/integration/snapshot_diff.sh
INTEGRATION_TESTS += tests/integration/clone.sh tests/integration/migrate.sh
INTEGRATION_TESTS += tests/integration/tarnd.sh tests/integration/tarnd_quota.sh tests/integration/tarnd_many.sh tests/integration/tarnd_crash.sh
INTEGRATION_TESTS += tests/integration/switch.sh tests/integration/switch_vxlan.sh tests/integration/switch_qos.sh
INTEGRATION_TESTS += tests/integration/tarnd_net.sh
INTEGRATION_TESTS += tests/integration/tarnd_jail.sh tests/integration/tarnd_volumes.sh tests/integration/tarnd_snapshot.sh tests/integration/tarnd_console.sh

# The KVM half of the suite on a real KVM: this host's, or the nested bed's
# (tests/nested/kvm_suite.sh says which and why).
INTEGRATION_TESTS += tests/nested/kvm_suite.sh
