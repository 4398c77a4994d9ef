/* tarn: the command line. One table of subcommands. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "api/ctl.h"
#include "api/http.h"
#include "block/qcow2.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/console.h"
#include "core/jail.h"
#include "core/log.h"
#include "core/version.h"
#include "core/vm.h"
#include "core/vm_config.h"
#include "cpu/cpu.h"
#include "migrate/migrate.h"


static const char run_usage[] =
	"usage: tarn run --kernel PATH [options]\n"
	"       tarn run --restore PATH [options]\n"
	"       tarn run --api-sock PATH [options]\n"
	"       tarn run --incoming HOST:PORT [options]\n"
	"\n"
	"Boot a guest with its serial console (COM1) on this terminal.\n"
	"\n"
	"  --kernel PATH     kernel: bzImage, or x86-64 ELF (PVH note honoured)\n"
	"  --initrd PATH     initial ramdisk\n"
	"  --cmdline STR     kernel command line (e.g. \"console=ttyS0\")\n"
	"  --mem SIZE        guest RAM; K/M/G suffixes, plain numbers are MiB (default " VM_DEFAULT_MEM ")\n"
	"  --cpus N          vCPUs, 1-255 (default 1)\n"
	"  --backend NAME    kvm, emu or auto (default auto: kvm when /dev/kvm works\n"
	"                    and is not PVM; tarn probe says which)\n"
	"  --cpu-template T  the CPU the guest sees: host (default: KVM shows this host's\n"
	"                    CPU, the emulator its own) or portable (the emulator's\n"
	"                    model on both, so that snapshots restore under the other\n"
	"                    backend) (vm.cpu_template)\n"
	"  --unpack WHERE    bzImage payload: host (default; unpacked by tarn when LZ4)\n"
	"                    or guest (the kernel's own decompressor runs)\n"
	"  --disk SPEC       add a virtio-blk disk: PATH[,ro][,direct][,serial=ID]\n"
	"                    [,bw=RATE][,iops=RATE]\n"
	"                    (repeatable; dev.disk.N)\n"
	"  --net SPEC        add a virtio-net NIC: tap=NAME|fd=N[,mac=XX:XX:XX:XX:XX:XX]\n"
	"                    [,offload=on|csum|off][,rx_bw=RATE][,rx_pps=RATE]\n"
	"                    [,tx_bw=RATE][,tx_pps=RATE] (repeatable; dev.net.N)\n"
	"                    RATE: 10MB/s, 50Mbit/s, 500 (a second), +BURST once\n"
	"                    (10MB/s+50MB), or SIZE:REFILL_MS[:BURST] (Firecracker's)\n"
	"                    or vhost-user=PATH[,mac=MAC]: a port of tarn-switch (or\n"
	"                    any vhost-user back end); guest RAM is then shared\n"
	"  --rng             add a virtio-rng device fed by getrandom(2) (dev.rng = on)\n"
	"  --vconsole SPEC   add a virtio-console (hvc0): pty or file=PATH (dev.console)\n"
	"  --ioeventfd on|off  KVM: virtio kicks through ioeventfds to per-device I/O\n"
	"                    threads (vm.ioeventfd; default on; off: served in the\n"
	"                    vCPU thread that kicked, as on the emulator)\n"
	"  --restore PATH    start from a snapshot's state file (restore.state) instead\n"
	"                    of a kernel: the machine as it was saved; --backend, --net\n"
	"                    and --disk given here replace the snapshot's (README\n"
	"                    \"Snapshots\")\n"
	"  --restore-mem PATH  the snapshot's memory file (restore.mem; default PATH.mem)\n"
	"  --restore-eager   read guest memory in whole instead of mapping it\n"
	"                    copy-on-write (restore.eager = on)\n"
	"  --paused          leave a restored VM paused (restore.paused = on), to be\n"
	"                    resumed through the API\n"
	"  --incoming ADDR   take a VM that another tarn migrates here instead of a\n"
	"                    kernel: listen on HOST:PORT or unix:PATH for one source\n"
	"                    (migrate.incoming; the source: PUT /migrate, README\n"
	"                    \"Live migration\"); --backend, --disk and --net given\n"
	"                    here replace the source's, as with --restore\n"
	"  --track-dirty-pages  keep track of the pages the guest writes, so that a\n"
	"                    diff snapshot saves only those (vm.track_dirty_pages = on)\n"
	"  --api-sock PATH   serve the VM's API (Firecracker's dialect) on a Unix socket\n"
	"                    at PATH (api.sock); without --kernel, wait to be\n"
	"                    configured and started through it (README \"The API\")\n"
	"  --console-sock PATH  also serve the serial console on a Unix socket at\n"
	"                    PATH: what the guest writes goes to each client too, and\n"
	"                    a client's bytes are the guest's input (console.sock)\n"
	"  --jail DIR,uid=N,gid=N  once the VM is built, before the guest runs: DIR\n"
	"                    becomes / (pivot_root in a mount namespace of tarn's own),\n"
	"                    the uid and gid are taken, capabilities dropped, and a\n"
	"                    seccomp filter confines every thread (jail.spec; README\n"
	"                    \"The jail\"; tarnd adds PID and network namespaces)\n"
	"  --config FILE     read options as dotted keys (vm.mem = 1G, boot.kernel = ...)\n"
	"  -v, --verbose     log more (twice for debug)\n"
	"  -h, --help        this text\n"
	"\n"
	"Console: Ctrl-A x stops the VM; Ctrl-A Ctrl-A sends Ctrl-A.\n"
	"\n"
	"Exit status: 0 guest powered off (or stopped by Ctrl-A x / SIGTERM),\n"
	"  2 bad input (nothing ran), 4 guest rebooted, 6 guest crashed (triple fault,\n"
	"  registers printed), 8 VMM error (or a call the jail forbids), odd N: the\n"
	"  guest wrote (N-1)/2 to the debug-exit port 0xf4.\n";

static const char main_usage[] =
	"usage: tarn COMMAND [options]\n"
	"\n"
	"tarn is a virtual machine monitor: KVM when the host has it, its own x86-64\n"
	"emulator when it does not.\n"
	"\n"
	"commands:\n"
	"  run       boot a guest (tarn run --help)\n"
	"  probe     say which CPU backends this host can run (tarn probe --help)\n"
	"  ctl       drive a running VM through its API socket (tarn ctl --help)\n"
	"  img       create qcow2 disk images, over a backing file (tarn img --help)\n"
	"  version   print the version\n"
	"  help      this text\n";

/* Command-line options map onto config keys, the same keys a --config file
 * (and later the API) uses. */
static const struct option run_opts[] = {
	{ "kernel", required_argument, NULL, 'k' },
	{ "initrd", required_argument, NULL, 'i' },
	{ "cmdline", required_argument, NULL, 'c' },
	{ "mem", required_argument, NULL, 'm' },
	{ "cpus", required_argument, NULL, 'p' },
	{ "backend", required_argument, NULL, 'b' },
	{ "unpack", required_argument, NULL, 'u' },
	{ "disk", required_argument, NULL, 'D' },
	{ "net", required_argument, NULL, 'N' },
	{ "rng", no_argument, NULL, 'R' },
	{ "vconsole", required_argument, NULL, 'C' },
	{ "ioeventfd", required_argument, NULL, 'E' },
	{ "api-sock", required_argument, NULL, 'A' },
	{ "jail", required_argument, NULL, 'J' },
	{ "console-sock", required_argument, NULL, 'O' },
	{ "cpu-template", required_argument, NULL, 'T' },
	{ "restore", required_argument, NULL, 'S' },
	{ "restore-mem", required_argument, NULL, 'M' },
	{ "restore-eager", no_argument, NULL, 'G' },
	{ "paused", no_argument, NULL, 'P' },
	{ "track-dirty-pages", no_argument, NULL, 'Y' },
	{ "incoming", required_argument, NULL, 'I' },
	{ "config", required_argument, NULL, 'f' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static const struct {
	int opt;
	const char *key;
} opt_keys[] = {
	{ 'k', "boot.kernel" }, { 'i', "boot.initrd" }, { 'c', "boot.cmdline" },
	{ 'm', "vm.mem" },	{ 'p', "vm.cpus" },	{ 'b', "vm.backend" },
	{ 'u', "boot.unpack" },	{ 'C', "dev.console" }, { 'E', "vm.ioeventfd" },
	{ 'A', "api.sock" },	{ 'S', "restore.state" }, { 'T', "vm.cpu_template" }, { 'M', "restore.mem" },
	{ 'J', "jail.spec" },	{ 'O', "console.sock" }, { 'I', "migrate.incoming" },
};

static void set_or_die(struct config *c, const char *key, const char *val)
{
	if (config_set(c, key, val))
		die("out of memory");
}

/* Repeatable options live under PREFIX.0, PREFIX.1, ...: set the first
 * free index. */
static void add_indexed(struct config *c, const char *prefix, int max, const char *val)
{
	int ret = config_add_indexed(c, prefix, max, val);

	if (ret == -ENOSPC)
		die("--%s: at most %d", strrchr(prefix, '.') + 1, max);
	if (ret)
		die("out of memory");
}

/* The signals that stop tarn (SIGINT, SIGTERM, SIGHUP). They are blocked
 * before any thread starts, so that every thread made later inherits that,
 * and are taken only from a signalfd (console.c) or, before the VM starts,
 * by quit_pending. */
static void stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
}

static bool quit_pending(void)
{
	sigset_t set;
	int sig;

	stop_signals(&set);
	sig = sigtimedwait(&set, NULL, &(struct timespec){ 0 });
	if (sig > 0)
		pr_info("signal %d before the VM started", sig);
	return sig > 0;
}

/* Replace the snapshot's devices of one kind (a clone's own tap and MAC,
 * its own disk overlay) by those c names, when it names any. */
static int override_devices(const struct config *c, const char *prefix, const char **list, int nr, int max,
			    char *err, size_t len)
{
	const char *mine[VM_MAX_DISKS > VM_MAX_NETS ? VM_MAX_DISKS : VM_MAX_NETS];
	int n = config_get_indexed(c, prefix, max, mine, err, len);

	if (n <= 0)
		return n;
	if (n != nr)
		return errorf(err, len, -EINVAL, "--%s given %d time(s); the snapshot's VM has %d", strrchr(prefix, '.') + 1,
			      n, nr);
	memcpy(list, mine, (size_t)n * sizeof(*list));
	return 0;
}

/* A migration's destination: the one VM that comes to
 * migrate.incoming (its configuration's strings point into it). */
static struct mig_incoming *incoming;

/* A restored or migrated VM's configuration as c changes it: the
 * backend, the disks and NICs (paths on this host), the console. */
static int adjust_config(const struct config *c, struct vm_config *vc, char *err, size_t len)
{
	const char *eager = config_get(c, "restore.eager"), *backend = config_get(c, "vm.backend");
	int ret;

	if (backend)
		vc->backend = backend;
	vc->restore_eager = eager && !strcmp(eager, "on");
	if ((ret = vm_config_track_dirty(c, vc, err, len)))
		return ret;
	vc->console_in = STDIN_FILENO;
	vc->console_out = STDOUT_FILENO;
	ret = override_devices(c, "dev.disk", vc->disks, vc->nr_disks, VM_MAX_DISKS, err, len);
	return ret ? ret : override_devices(c, "dev.net", vc->nets, vc->nr_nets, VM_MAX_NETS, err, len);
}

/* Wait for the VM another tarn migrates to migrate.incoming, build it
 * and take it over (paused or running, as it was there). */
static int receive_vm(const struct config *c, const char *addr, struct vm_config *vc, struct vm **vm, char *err,
		      size_t len)
{
	char why[512];
	int fd, ret;

	if ((fd = mig_listen(addr, err, len)) < 0)
		return fd;
	pr_info("incoming: waiting for a migration on %s", addr);
	ret = mig_accept(&incoming, fd, vc, err, len);
	close(fd);
	if (!strncmp(addr, "unix:", 5))
		unlink(addr + 5);
	if (ret)
		return ret;
	if ((ret = adjust_config(c, vc, why, sizeof(why))) || (ret = vm_create(vm, vc, why, sizeof(why)))) {
		errorf(err, len, ret, "the VM cannot be built here: %s", why);
		mig_refuse(incoming, err);
		return ret;
	}
	if ((ret = mig_receive(incoming, *vm, why, sizeof(why)))) {
		vm_destroy(*vm);
		*vm = NULL;
		return errorf(err, len, ret, "incoming migration: %s", why);
	}
	return 0;
}

/* The VM c describes: booted from its kernel, restored from the
 * snapshot restore.state names (vc's strings then point into img, which
 * must outlive the VM), or migrated here. */
static int build_vm(const struct config *c, struct vm_config *vc, struct snap_image *img, struct vm **vm,
		    char *err, size_t len)
{
	const char *state = config_get(c, "restore.state"), *mem = config_get(c, "restore.mem");
	const char *in = config_get(c, "migrate.incoming");
	char mem_buf[4096];
	int ret;

	if ((state || in) && config_get(c, "boot.kernel"))
		return errorf(err, len, -EINVAL, "--%s and --kernel: a %s VM does not boot a kernel",
			      state ? "restore" : "incoming", state ? "restored" : "migrated");
	if (state && in)
		return errorf(err, len, -EINVAL, "--restore and --incoming: one or the other");
	if (in)
		return receive_vm(c, in, vc, vm, err, len);
	if (!state) {
		ret = vm_config_from(c, vc, err, len);
		return ret ? ret : vm_create(vm, vc, err, len);
	}
	if (!mem) {
		snprintf(mem_buf, sizeof(mem_buf), "%s.mem", state);
		mem = mem_buf;
	}
	ret = snap_open(img, state, mem, vc, err, len);
	if (ret)
		return ret;
	ret = adjust_config(c, vc, err, len);
	if (!ret)
		ret = vm_create(vm, vc, err, len);
	if (ret) {
		snap_close(img);
		return ret;
	}
	return 0;
}

/* A restored VM runs unless asked to stay paused. */
static void restore_start(const struct config *c, struct vm *vm)
{
	const char *paused = config_get(c, "restore.paused");

	if (!vm->cfg.restore || vm->cfg.incoming) /* a migration's: as it was at the source */
		return;
	if (paused && !strcmp(paused, "on")) {
		pr_info("restore: the VM stays paused (resume it through the API)");
		return;
	}
	if (vm_resume(vm))
		pr_warn("restore: cannot resume the VM");
	pr_info("restore: running %.3f ms after the snapshot was opened",
		(double)(monotonic_ns() - vm->cfg.restore->open_ns) / 1e6);
}

/* tarn run --api-sock without --kernel: wait for InstanceStart (or
 * /snapshot/load) and build the VM it describes (cli's keys, the API's
 * added into run_cfg, whose strings vc points into), as often as a start
 * fails. NULL when a signal came first. */
static struct vm *api_boot(struct api *api, const struct config *cli, struct config *run_cfg,
			   struct vm_config *vc, struct snap_image *img)
{
	char err[512];
	struct vm *vm;

	for (;;) {
		config_free(run_cfg);
		config_init(run_cfg);
		if (api_wait_start(api, cli, run_cfg, quit_pending))
			return NULL;
		if (!build_vm(run_cfg, vc, img, &vm, err, sizeof(err))) {
			restore_start(run_cfg, vm);
			api_started(api, vm, NULL);
			return vm;
		}
		pr_warn("InstanceStart: %s", err);
		api_started(api, NULL, err);
	}
}

static void no_op(int sig)
{
}

static int cmd_run(int argc, char **argv)
{
	struct jail_config jail = { 0 };
	struct config cfg, api_cfg;
	struct vm_config vc;
	struct snap_image img = { .mem_fd = -1 };
	struct vm *vm;
	struct api *api = NULL;
	const char *sock;
	sigset_t sigs;
	char err[512];
	int opt, verbose = 0, status;

	config_init(&cfg);
	config_init(&api_cfg);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "vh", run_opts, NULL)) != -1) {
		bool done = false;

		for (size_t i = 0; i < sizeof(opt_keys) / sizeof(opt_keys[0]); i++) {
			if (opt_keys[i].opt == opt) {
				set_or_die(&cfg, opt_keys[i].key, optarg);
				done = true;
			}
		}
		if (done)
			continue;
		switch (opt) {
		case 'f':
			if (config_load_file(&cfg, optarg, err, sizeof(err)))
				die("--config: %s", err);
			break;
		case 'D':
			add_indexed(&cfg, "dev.disk", VM_MAX_DISKS, optarg);
			break;
		case 'N':
			add_indexed(&cfg, "dev.net", VM_MAX_NETS, optarg);
			break;
		case 'R':
			set_or_die(&cfg, "dev.rng", "on");
			break;
		case 'G':
			set_or_die(&cfg, "restore.eager", "on");
			break;
		case 'P':
			set_or_die(&cfg, "restore.paused", "on");
			break;
		case 'Y':
			set_or_die(&cfg, "vm.track_dirty_pages", "on");
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			fputs(run_usage, stdout);
			exit(0);
		default:
			fputs("tarn: see 'tarn run --help'\n", stderr);
			exit(2);
		}
	}
	if (optind < argc)
		die("run: unexpected argument '%s' (tarn run --help)", argv[optind]);
	log_threshold = verbose >= 2 ? LOG_DEBUG : verbose ? LOG_INFO : LOG_WARN;
	if (config_get(&cfg, "jail.spec")) {
		if (jail_parse(config_get(&cfg, "jail.spec"), &jail, err, sizeof(err)))
			die("%s", err);
		/* Namespaces of our own while we are one thread: a mount
		 * namespace for pivot_root, IPC and UTS. */
		if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS))
			die("--jail: cannot make namespaces: %s (root is needed)", strerror(errno));
	}
	stop_signals(&sigs);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	/* Handled, though blocked and taken from a signalfd: the first
	 * process of a PID namespace (a jailed tarn under tarnd) is sent only
	 * the signals it has a handler for. */
	for (int sig = 1; sig < NSIG; sig++)
		if (sigismember(&sigs, sig))
			sigaction(sig, &(struct sigaction){ .sa_handler = no_op }, NULL);
	if ((sock = config_get(&cfg, "console.sock"))) {
		int fd = http_listen_unix(sock, "--console-sock", err, sizeof(err));

		if (fd < 0)
			die("%s", err);
		console_listen(fd);
	}
	if ((sock = config_get(&cfg, "api.sock"))) {
		if (api_start(&api, sock, err, sizeof(err)))
			die("%s", err);
		api_set_cli_config(api, &cfg);
	}
	if (!api || config_get(&cfg, "boot.kernel") || config_get(&cfg, "restore.state") ||
	    config_get(&cfg, "migrate.incoming")) {
		if (build_vm(&cfg, &vc, &img, &vm, err, sizeof(err))) {
			api_stop(api);
			die("%s", err);
		}
		restore_start(&cfg, vm);
		if (api)
			api_started(api, vm, NULL);
	} else if (!(vm = api_boot(api, &cfg, &api_cfg, &vc, &img))) {
		api_stop(api);
		return 0; /* a signal before InstanceStart */
	}
	pr_info("%s backend, %d vCPU(s), %llu MiB", vm->cpu->name, vm->nr_vcpus,
		(unsigned long long)(vc.mem_size >> 20));
	if (vm->cpu == &kvm_cpu_ops && kvm_flavour() == KVM_PVM)
		pr_warn("/dev/kvm is PVM, a software KVM that runs only kernels built as PVM "
			"guests: an ordinary kernel stops with a KVM internal error (--backend emu "
			"runs any kernel)");
	if (jail.root && jail_enter(&jail, err, sizeof(err))) {
		api_stop(api);
		die("%s", err);
	}
	if (console_attach(vm, vc.console_in))
		die("cannot attach the console: %s", strerror(errno));
	status = vm_run(vm);
	if (api)
		api_vm_stopped(api);
	console_detach();
	switch (status) {
	case VM_EXIT_POWEROFF:
		if (vm->migrated)
			fprintf(stderr, "tarn: the VM migrated; it runs at the destination now\n");
		break;
	case VM_EXIT_RESET: pr_info("guest requested a reboot"); break;
	case VM_EXIT_CRASH: fprintf(stderr, "tarn: the guest crashed\n"); break;
	case VM_EXIT_VMM_ERROR: fprintf(stderr, "tarn: stopped on a VMM error\n"); break;
	default: pr_info("guest wrote %d to the debug-exit port", (status - 1) / 2); break;
	}
	vm_destroy(vm);
	snap_close(&img);
	mig_incoming_free(incoming);
	api_stop(api);
	config_free(&api_cfg);
	config_free(&cfg);
	return status;
}

static const char probe_usage[] =
	"usage: tarn probe [kvm|emu]\n"
	"\n"
	"Say which CPU backends work on this host, and what kind of KVM /dev/kvm is:\n"
	"hardware, nested (this host is itself a VM), nested-tcg (a VM under QEMU's\n"
	"software emulator) or pvm (a software KVM that runs only kernels built as\n"
	"PVM guests; --backend auto does not choose it).\n"
	"With a backend named, print only its line; exit 0 when it is usable, 1 when not.\n";

/* One line per backend: "kvm: usable, hardware" or "kvm: unusable: why". */
static int probe_line(const char *name)
{
	char why[200];

	if (!strcmp(name, "emu")) {
		puts("emu: usable");
		return 0;
	}
	if (kvm_cpu_ops.probe(why, sizeof(why))) {
		printf("kvm: unusable: %s\n", why);
		return 1;
	}
	printf("kvm: usable, %s\n", kvm_flavour_name(kvm_flavour()));
	return 0;
}

static int cmd_probe(int argc, char **argv)
{
	if (argc > 2 || (argc == 2 && strcmp(argv[1], "kvm") && strcmp(argv[1], "emu"))) {
		if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
			fputs(probe_usage, stdout);
			return 0;
		}
		fputs(probe_usage, stderr);
		return 2;
	}
	if (argc == 2)
		return probe_line(argv[1]);
	probe_line("kvm");
	probe_line("emu");
	return 0;
}

static const char img_usage[] =
	"usage: tarn img create [-b BACKING] PATH [SIZE]\n"
	"       tarn img merge-mem DIFF BASE\n"
	"\n"
	"Create a qcow2 image (version 3, 64 KiB clusters) at PATH, which must not\n"
	"exist: SIZE bytes (K/M/G suffixes), or, over BACKING (a raw or qcow2 image,\n"
	"named relative to PATH's directory unless absolute), BACKING's size when\n"
	"SIZE is left out. The VM's disk is then PATH: what it writes stays there,\n"
	"BACKING is only read (a clone's or a backup's disk over a frozen one).\n"
	"qemu-img info and check read it.\n"
	"\n"
	"merge-mem writes the pages a diff snapshot's memory file DIFF holds over\n"
	"BASE, the memory file of the snapshot the diff followed, in place: BASE is\n"
	"then the diff's memory file (restore the diff's state with it). Merge\n"
	"diffs in the order they were taken (README \"Snapshots\").\n";

static int cmd_img(int argc, char **argv)
{
	const char *backing = NULL;
	char err[512];
	uint64_t size = 0;
	int opt;

	if (argc == 4 && !strcmp(argv[1], "merge-mem")) {
		uint64_t n;

		if (snap_merge_memory(argv[2], argv[3], &n, err, sizeof(err))) {
			fprintf(stderr, "tarn: img merge-mem: %s\n", err);
			return 1;
		}
		printf("%s: %llu KiB merged into %s\n", argv[2], (unsigned long long)(n >> 10), argv[3]);
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "create")) {
		bool help = argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));

		fputs(img_usage, help ? stdout : stderr);
		return help ? 0 : 2;
	}
	optind = 1;
	while ((opt = getopt(argc - 1, argv + 1, "b:h")) != -1) {
		if (opt == 'b') {
			backing = optarg;
		} else {
			fputs(img_usage, opt == 'h' ? stdout : stderr);
			return opt == 'h' ? 0 : 2;
		}
	}
	argc--, argv++;
	if (optind >= argc || argc - optind > 2 || (!backing && argc - optind != 2)) {
		fputs(img_usage, stderr);
		return 2;
	}
	if (argc - optind == 2 && parse_size(argv[optind + 1], 1, &size))
		die("img create: %s: not a size (examples: 10G, 512M)", argv[optind + 1]);
	if (qcow2_create(argv[optind], size, backing, err, sizeof(err))) {
		fprintf(stderr, "tarn: img create: %s\n", err);
		return 1;
	}
	return 0;
}

static int cmd_version(int argc, char **argv)
{
	printf("tarn %s\n", TARN_VERSION);
	return 0;
}

static int cmd_help(int argc, char **argv)
{
	fputs(main_usage, stdout);
	return 0;
}

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{ "run", cmd_run },
	{ "probe", cmd_probe },
	{ "ctl", cmd_ctl },
	{ "img", cmd_img },
	{ "version", cmd_version },
	{ "help", cmd_help },
	{ "--help", cmd_help },
	{ "-h", cmd_help },
	{ "--version", cmd_version },
};

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(main_usage, stderr);
		return 2;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "tarn: unknown command '%s' (tarn help)\n", argv[1]);
	return 2;
}
