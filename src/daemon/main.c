/* tarnd: the host daemon (daemon/tarnd.h). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/http.h"
#include "core/config.h"
#include "core/log.h"
#include "core/version.h"
#include "daemon/db.h"
#include "daemon/tarnd.h"

#define TICK_MS 100 /* how often the loop looks at the processes without being woken */

static const char usage[] =
	"usage: tarnd [--state-dir DIR] [--socket PATH] [options]\n"
	"\n"
	"The host daemon: keeps VMs (each a `tarn run` process of its own) as its\n"
	"database says, through a REST API on a Unix socket that tarnctl speaks\n"
	"(README \"Many VMs on one host\"). VMs keep running when tarnd stops; a new\n"
	"tarnd adopts them.\n"
	"\n"
	"  --state-dir DIR   the database (tarnd.db) and each VM's directory\n"
	"                    (default " TARND_DEFAULT_STATE ")\n"
	"  --socket PATH     the API's socket (default " TARND_DEFAULT_SOCKET ")\n"
	"  --listen HOST:PORT  also serve the API over TCP, to tenants' tokens only\n"
	"                    (plain HTTP: keep it on a trusted network or a tunnel)\n"
	"  --tarn PATH       the tarn binary VMs run under (default: the one beside\n"
	"                    tarnd, else tarn on PATH)\n"
	"  --stop-timeout S  how long a stop waits for the guest to answer the power\n"
	"                    button before tarn is told to end the VM (default 30)\n"
	"  --console-cap SIZE  console output kept per VM (default 1M; half of it\n"
	"                    rotated to console.log.1)\n"
	"  --cpu-overcommit R  vCPUs that running VMs may have per host CPU\n"
	"                    (default 16, as OpenStack's); a VM beyond is refused\n"
	"  --mem-overcommit R  guest memory per MiB of the host's, less the reserve\n"
	"                    (default 1: none)\n"
	"  --mem-reserve SIZE  host memory kept from VMs (default 512M)\n"
	"  --no-jail         run VMs without the jail (README \"The jail\"); without\n"
	"                    root there is none anyway\n"
	"  --jail-uid-base N  a VM's uid and gid in the jail: N + its id (default\n"
	"                    " TARND_JAIL_UID_BASE_S ")\n"
	"  -v, --verbose     log more (the default: the events, and every API call\n"
	"                    with who made it and its result)\n"
	"  -h, --help        this text\n";

static volatile sig_atomic_t quit;

static void on_signal(int sig)
{
	quit = sig;
}

static void mkdirs(const char *path)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			mkdir(buf, 0755);
			*p = '/';
		}
	}
	mkdir(buf, 0750);
}

/* The tarn beside this tarnd, else on PATH. */
static const char *find_tarn(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 8);
	char *slash;

	if (n > 0) {
		buf[n] = 0;
		slash = strrchr(buf, '/');
		if (slash) {
			strcpy(slash + 1, "tarn");
			if (!access(buf, X_OK))
				return buf;
		}
	}
	return "tarn";
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 'd' }, { "socket", required_argument, NULL, 's' },
		{ "listen", required_argument, NULL, 'l' },
		{ "tarn", required_argument, NULL, 't' },      { "stop-timeout", required_argument, NULL, 'T' },
		{ "console-cap", required_argument, NULL, 'c' }, { "verbose", no_argument, NULL, 'v' },
		{ "cpu-overcommit", required_argument, NULL, 'C' }, { "mem-overcommit", required_argument, NULL, 'O' },
		{ "mem-reserve", required_argument, NULL, 'R' },
		{ "no-jail", no_argument, NULL, 'J' },	       { "jail-uid-base", required_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },	       { NULL, 0, NULL, 0 },
	};
	static struct tarnd d;
	const char *sock = TARND_DEFAULT_SOCKET, *tcp = NULL;
	char err[512], tarn_buf[PATH_MAX], db_path[PATH_MAX], dir[PATH_MAX];
	struct sigaction sa = { .sa_handler = on_signal };
	uint64_t v;
	int opt, fd;

	log_prog = "tarnd";
	d.state_dir = TARND_DEFAULT_STATE;
	d.stop_timeout_ms = 30000;
	d.console_cap = 1 << 20;
	d.jail = true;
	d.cpu_overcommit = 16;
	d.mem_overcommit = 1;
	d.mem_reserve_mib = 512;
	d.jail_uid_base = TARND_JAIL_UID_BASE;
	/* A daemon's log is its record: what happened to the VMs (events) and
	 * who asked for what (the audit), at info. */
	log_threshold = LOG_INFO;
	while ((opt = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'd': d.state_dir = optarg; break;
		case 's': sock = optarg; break;
		case 'l': tcp = optarg; break;
		case 't': d.tarn = optarg; break;
		case 'T':
			if (parse_uint(optarg, 0, 3600, &v))
				die("--stop-timeout %s: seconds, 0 to 3600", optarg);
			d.stop_timeout_ms = (int)v * 1000;
			break;
		case 'c':
			if (parse_size(optarg, 1, &v) || v < 4096)
				die("--console-cap %s: a size of 4K or more (examples: 512K, 4M)", optarg);
			d.console_cap = v;
			break;
		case 'J': d.jail = false; break;
		case 'C':
		case 'O': {
			char *end;
			double r = strtod(optarg, &end);

			if (*end || !(r >= 0.1 && r <= 100))
				die("--%s-overcommit %s: a ratio from 0.1 to 100", opt == 'C' ? "cpu" : "mem", optarg);
			*(opt == 'C' ? &d.cpu_overcommit : &d.mem_overcommit) = r;
			break;
		}
		case 'R':
			if (parse_size(optarg, 1ULL << 20, &v))
				die("--mem-reserve %s: a size (examples: 512M, 2G)", optarg);
			d.mem_reserve_mib = v >> 20;
			break;
		case 'U':
			if (parse_uint(optarg, 1000, 0xfffffffeu - TARND_MAX_VM_ID, &v))
				die("--jail-uid-base %s: 1000 to %u", optarg, 0xfffffffeu - TARND_MAX_VM_ID);
			d.jail_uid_base = (unsigned)v;
			break;
		case 'v': log_threshold = log_threshold < LOG_DEBUG ? log_threshold + 1 : LOG_DEBUG; break;
		case 'h': fputs(usage, stdout); return 0;
		default: fputs("tarnd: see 'tarnd --help'\n", stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tarnd: unexpected argument '%s': see 'tarnd --help'\n", argv[optind]);
		return 2;
	}
	if (!d.tarn)
		d.tarn = find_tarn(tarn_buf, sizeof(tarn_buf));
	/* tarn's switch: beside the tarn VMs run under. */
	snprintf(d.switch_bin, sizeof(d.switch_bin), "%s", d.tarn);
	if (strrchr(d.switch_bin, '/'))
		strcpy(strrchr(d.switch_bin, '/') + 1, "tarn-switch");
	else
		snprintf(d.switch_bin, sizeof(d.switch_bin), "tarn-switch");
	if (d.jail && geteuid()) {
		pr_warn("not root: VMs run without the jail (namespaces, pivot_root and another uid need root)");
		d.jail = false;
	}
	snprintf(dir, sizeof(dir), "%s/vms", d.state_dir);
	mkdirs(dir);
	snprintf(dir, sizeof(dir), "%s/volumes", d.state_dir);
	mkdirs(dir);
	snprintf(dir, sizeof(dir), "%s", sock);
	if (strrchr(dir, '/')) {
		*strrchr(dir, '/') = 0;
		if (*dir)
			mkdirs(dir);
	}
	snprintf(db_path, sizeof(db_path), "%s/tarnd.db", d.state_dir);
	if (db_open(&d.db, db_path, err, sizeof(err)))
		die("%s", err);
	pthread_mutex_init(&d.lock, NULL);
	pthread_cond_init(&d.events, NULL);
	d.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d.wake_fd < 0)
		die("eventfd: %s", strerror(errno));
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	pthread_mutex_lock(&d.lock);
	tarnd_adopt(&d);
	if (tarnd_has_networks(&d))
		tarnd_switch_check(&d); /* the switch, before VMs on networks start */
	tarnd_reconcile(&d);
	pthread_mutex_unlock(&d.lock);

	fd = http_listen_unix(sock, "--socket", err, sizeof(err));
	if (fd < 0)
		die("%s", err);
	chmod(sock, 0660); /* whoever may open it is admin: root, the socket's group */
	if (tarnd_api_start(&d, fd, err, sizeof(err)))
		die("--socket %s: %s", sock, err);
	if (tcp && ((fd = http_listen_tcp(tcp, "--listen", err, sizeof(err))) < 0 ||
		    tarnd_api_start(&d, fd, err, sizeof(err))))
		die("%s", err);
	pr_info("tarnd %s: state in %s, API on %s, VMs run %s", TARN_VERSION, d.state_dir, sock, d.tarn);
	fprintf(stderr, "tarnd: ready on %s%s%s\n", sock, tcp ? " and " : "", tcp ? tcp : "");

	while (!quit) {
		struct pollfd pfd = { .fd = d.wake_fd, .events = POLLIN };
		uint64_t n;

		if (poll(&pfd, 1, TICK_MS) > 0 && read(d.wake_fd, &n, sizeof(n)) < 0)
			pr_debug("wake: %s", strerror(errno));
		pthread_mutex_lock(&d.lock);
		tarnd_reconcile(&d);
		pthread_mutex_unlock(&d.lock);
	}
	/* The VMs run on: a new tarnd adopts them. The event streams end. */
	pthread_mutex_lock(&d.lock);
	d.stopping = true;
	pthread_cond_broadcast(&d.events);
	pthread_mutex_unlock(&d.lock);
	tarnd_api_stop();
	unlink(sock);
	sqlite3_close(d.db);
	fprintf(stderr, "tarnd: %s: stopped (the VMs run on)\n", strsignal(quit));
	return 0;
}
