/* tarn: the command line. One table of subcommands. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/console.h"
#include "core/log.h"
#include "core/vm.h"
#include "cpu/cpu.h"

#define TARN_VERSION "0.1"
#define DEFAULT_MEM "512M"

static const char run_usage[] =
	"usage: tarn run --kernel PATH [options]\n"
	"\n"
	"Boot a guest with its serial console (COM1) on this terminal.\n"
	"\n"
	"  --kernel PATH     kernel: bzImage, or x86-64 ELF (PVH note honoured)\n"
	"  --initrd PATH     initial ramdisk\n"
	"  --cmdline STR     kernel command line (e.g. \"console=ttyS0\")\n"
	"  --mem SIZE        guest RAM; K/M/G suffixes, plain numbers are MiB (default " DEFAULT_MEM ")\n"
	"  --cpus N          vCPUs, 1-255 (default 1)\n"
	"  --backend NAME    kvm, emu or auto (default auto: kvm when /dev/kvm works\n"
	"                    and is not PVM; tarn probe says which)\n"
	"  --unpack WHERE    bzImage payload: host (default; unpacked by tarn when LZ4)\n"
	"                    or guest (the kernel's own decompressor runs)\n"
	"  --disk SPEC       add a virtio-blk disk: PATH[,ro][,direct][,serial=ID]\n"
	"                    (repeatable; dev.disk.N)\n"
	"  --net SPEC        add a virtio-net NIC: tap=NAME|fd=N[,mac=XX:XX:XX:XX:XX:XX]\n"
	"                    [,offload=on|csum|off] (repeatable; dev.net.N)\n"
	"  --rng             add a virtio-rng device fed by getrandom(2) (dev.rng = on)\n"
	"  --vconsole SPEC   add a virtio-console (hvc0): pty or file=PATH (dev.console)\n"
	"  --ioeventfd on|off  KVM: virtio kicks through ioeventfds to per-device I/O\n"
	"                    threads (vm.ioeventfd; default on; off: served in the\n"
	"                    vCPU thread that kicked, as on the emulator)\n"
	"  --config FILE     read options as dotted keys (vm.mem = 1G, boot.kernel = ...)\n"
	"  -v, --verbose     log more (twice for debug)\n"
	"  -h, --help        this text\n"
	"\n"
	"Console: Ctrl-A x stops the VM; Ctrl-A Ctrl-A sends Ctrl-A.\n"
	"\n"
	"Exit status: 0 guest powered off (or stopped by Ctrl-A x / SIGTERM),\n"
	"  2 bad input (nothing ran), 4 guest rebooted, 6 guest crashed (triple fault,\n"
	"  registers printed), 8 VMM error, odd N: the guest wrote (N-1)/2 to the\n"
	"  debug-exit port 0xf4.\n";

static const char main_usage[] =
	"usage: tarn COMMAND [options]\n"
	"\n"
	"tarn is a virtual machine monitor: KVM when the host has it, its own x86-64\n"
	"emulator when it does not.\n"
	"\n"
	"commands:\n"
	"  run       boot a guest (tarn run --help)\n"
	"  probe     say which CPU backends this host can run (tarn probe --help)\n"
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
	char key[64];

	for (int i = 0; i < max; i++) {
		snprintf(key, sizeof(key), "%s.%d", prefix, i);
		if (!config_get(c, key)) {
			set_or_die(c, key, val);
			return;
		}
	}
	die("--%s: at most %d", strrchr(prefix, '.') + 1, max);
}

/* Collect PREFIX.N values in index order; any other key under PREFIX is an
 * error (a typo would otherwise drop a device silently). */
static int get_indexed(const struct config *c, const char *prefix, int max, const char **out)
{
	size_t plen = strlen(prefix);
	int n = 0;

	for (int i = 0; i < c->nr; i++) {
		const char *k = c->e[i].key;
		uint64_t idx;

		if (strncmp(k, prefix, plen) || (k[plen] != '.' && k[plen]))
			continue;
		if (!k[plen] || parse_uint(k + plen + 1, 0, (uint64_t)max - 1, &idx))
			die("%s: expected %s.0 .. %s.%d", k, prefix, prefix, max - 1);
		out[idx] = c->e[i].value;
	}
	for (int i = 0; i < max; i++) {
		if (out[i])
			out[n++] = out[i];
	}
	for (int i = n; i < max; i++)
		out[i] = NULL;
	return n;
}

/* Turn the config tree into a vm_config; exits with status 2 on bad values. */
static void config_to_vm(const struct config *c, struct vm_config *vc)
{
	const char *mem = config_get(c, "vm.mem");
	const char *cpus = config_get(c, "vm.cpus");
	const char *unpack = config_get(c, "boot.unpack");
	const char *rng = config_get(c, "dev.rng");
	const char *ioeventfd = config_get(c, "vm.ioeventfd");
	uint64_t v;

	memset(vc, 0, sizeof(*vc));
	vc->kernel = config_get(c, "boot.kernel");
	vc->initrd = config_get(c, "boot.initrd");
	vc->cmdline = config_get(c, "boot.cmdline");
	vc->backend = config_get(c, "vm.backend");
	if (!vc->backend)
		vc->backend = "auto";
	if (!vc->kernel)
		die("no kernel given: use --kernel PATH (tarn run --help)");
	if (parse_size(mem ? mem : DEFAULT_MEM, 1ULL << 20, &v))
		die("--mem %s: not a size (examples: 512M, 2G, 1024)", mem);
	vc->mem_size = v;
	if (cpus && parse_uint(cpus, 0, 1u << 20, &v))
		die("--cpus %s: not a number", cpus);
	vc->nr_cpus = cpus ? (int)v : 1;
	if (unpack && strcmp(unpack, "host") && strcmp(unpack, "guest"))
		die("--unpack %s: expected host or guest", unpack);
	vc->guest_unpack = unpack && !strcmp(unpack, "guest");
	if (rng && strcmp(rng, "on") && strcmp(rng, "off"))
		die("dev.rng = %s: expected on or off", rng);
	vc->nr_rng = rng && !strcmp(rng, "on");
	if (ioeventfd && strcmp(ioeventfd, "on") && strcmp(ioeventfd, "off"))
		die("--ioeventfd %s: expected on or off", ioeventfd);
	vc->ioeventfd = !ioeventfd || !strcmp(ioeventfd, "on");
	vc->nr_disks = get_indexed(c, "dev.disk", VM_MAX_DISKS, vc->disks);
	vc->nr_nets = get_indexed(c, "dev.net", VM_MAX_NETS, vc->nets);
	vc->vconsole = config_get(c, "dev.console");
	vc->console_in = STDIN_FILENO;
	vc->console_out = STDOUT_FILENO;
}

static int cmd_run(int argc, char **argv)
{
	struct config cfg;
	struct vm_config vc;
	struct vm *vm;
	char err[512];
	int opt, verbose = 0, status;

	config_init(&cfg);
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
	config_to_vm(&cfg, &vc);
	if (vm_create(&vm, &vc, err, sizeof(err)))
		die("%s", err);
	pr_info("%s backend, %d vCPU(s), %llu MiB", vm->cpu->name, vm->nr_vcpus,
		(unsigned long long)(vc.mem_size >> 20));
	if (vm->cpu == &kvm_cpu_ops && kvm_flavour() == KVM_PVM)
		pr_warn("/dev/kvm is PVM, a software KVM that runs only kernels built as PVM "
			"guests: an ordinary kernel stops with a KVM internal error (--backend emu "
			"runs any kernel)");
	if (console_attach(vm, vc.console_in))
		die("cannot attach the console: %s", strerror(errno));
	status = vm_run(vm);
	console_detach();
	switch (status) {
	case VM_EXIT_POWEROFF: break;
	case VM_EXIT_RESET: pr_info("guest requested a reboot"); break;
	case VM_EXIT_CRASH: fprintf(stderr, "tarn: the guest crashed\n"); break;
	case VM_EXIT_VMM_ERROR: fprintf(stderr, "tarn: stopped on a VMM error\n"); break;
	default: pr_info("guest wrote %d to the debug-exit port", (status - 1) / 2); break;
	}
	vm_destroy(vm);
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
