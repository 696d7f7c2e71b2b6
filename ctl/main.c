/* SPDX-License-Identifier: MIT */
/*
 * mvmctl: the command-line client of mvmd. main.c holds the global options,
 * the command table and `help`; each command group lives in its own file.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"

static int cmd_help(struct ctl *c, int argc, char **argv);

static const struct ctl_command commands[] = {
	{ "create", vm_create,
	  "create NAME --kernel PATH [--initrd PATH] [--cmdline S] [--vcpus N]\n"
	  "       [--mem SIZE] [--disk PATH[,ro][,LIMIT]...]... [--net tap=IF[,mac=M][,LIMIT]...]...\n"
	  "       [--balloon SIZE] [--rng] [--vsock CID] [--label K=V]...\n"
	  "       [--restart no|on-failure[:N]|always]\n"
	  "       [--pool NAME]... [--no-start] [--no-queue] [--autostart] [--wait]\n"
	  "       [-o json]\n"
	  "       create -f FILE|- [NAME] [create options]",
	  "define a VM and start it (SIZE: 256, 256M, 1.5G, 2048K; MiB by default); it counts\n"
	  "       in each --pool; --no-queue fails instead of waiting for a start slot;\n"
	  "       LIMIT: bps=SIZE, bps_burst=SIZE (bytes/s), iops=N, iops_burst=N (disk),\n"
	  "       pps=N, pps_burst=N (NIC); --balloon: a balloon holding SIZE at boot;\n"
	  "       --rng: a virtio-rng device (the host's getrandom); --vsock: a virtio-vsock\n"
	  "       device, guest CID 3..4294967294, its host socket in 'show' (docs/guests.md);\n"
	  "       -f: the VM of a JSON spec ('show NAME -o json' output, - for stdin;\n"
	  "       relative paths from the file's directory), options over it" },
	{ "run", run_run,
	  "run NAME [create options] [--rm] [--stop-timeout S]",
	  "create and start a VM, print its console, exit when it ends (0: powered\n"
	  "       off or reset; the worker's status; 75: refused for now, retry; 1:\n"
	  "       it can never run as asked); SIGTERM/SIGINT stop it (Ctrl-Alt-Del,\n"
	  "       killed after S seconds, default 10); --rm removes it at the end" },
	{ "start", vm_start, "start NAME... | --label K=V... [--wait] [-o json]",
	  "start created or stopped VMs" },
	{ "stop", vm_stop, "stop NAME... | --label K=V... [--timeout S] [-o json]",
	  "Ctrl-Alt-Del, then kill after S seconds (default 10)" },
	{ "restart", vm_restart, "restart NAME... | --label K=V... [--timeout S] [-o json]",
	  "stop (as stop does) where running, then start" },
	{ "kill", vm_kill, "kill NAME... | --label K=V... [--signal SIG] [-o json]",
	  "send SIG (default SIGKILL) to the VMs' workers" },
	{ "pause", vm_pause, "pause NAME... | --label K=V... [-o json]",
	  "hold running VMs' vCPUs (state paused; guest clocks stand still)" },
	{ "resume", vm_resume, "resume NAME... | --label K=V... [-o json]",
	  "run paused VMs again" },
	{ "rm", vm_rm, "rm [-f] NAME... | rm [-f] --label K=V... [-o json]",
	  "delete VMs (-f: kill them first if running)" },
	{ "list", list_list, "list [--state S] [--label K=V]... [-q] [-o json]",
	  "list VMs you may see (-q: names only)" },
	{ "show", list_show, "show NAME [-o json]", "a VM's definition, state and events" },
	{ "console", console_console, "console NAME [--idle S]",
	  "attach to the serial console; Ctrl-] detaches" },
	{ "logs", console_logs, "logs NAME [-f] [--tail N]",
	  "print the console log (-f: keep following)" },
	{ "events", console_events, "events [--vm NAME] [--since ID] [-o json]",
	  "stream lifecycle events until interrupted (--since: the stored ones after\n"
	  "       event ID first; -o json prints each event's id)" },
	{ "update", stats_update,
	  "update NAME [--disk I:LIMIT[,LIMIT]...]... [--net I:LIMIT[,LIMIT]...]...\n"
	  "       [--balloon SIZE] [-o json]",
	  "change a running VM's rate limits (LIMIT as for create; =none removes\n"
	  "       one) or balloon target; kept for its next start" },
	{ "stats", stats_stats, "stats [NAME...] [-o json]",
	  "CPU, memory, balloon, disk and network use of running VMs" },
	{ "host", host_host, "host [-o json] | host set KEY=VALUE [-o json]",
	  "host capacity, limits and usage; set changes a limit until restart or SIGHUP" },
	{ "metrics", host_metrics, "metrics [-o json]",
	  "mvmd's Prometheus metrics (the text GET /metrics serves)" },
	{ "version", host_version, "version [-o json]", "mvmctl, mvmd and protocol versions" },
	{ "help", cmd_help, "help [COMMAND]", "this text" },
	/* other names: a row without usage stands for the first row with its handler */
	{ "boot", vm_start, NULL, NULL },
	{ "shutdown", vm_stop, NULL, NULL },
	{ "destroy", vm_kill, NULL, NULL },
	{ "remove", vm_rm, NULL, NULL },
	{ "delete", vm_rm, NULL, NULL },
	{ "ls", list_list, NULL, NULL },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* The row whose usage an other name stands for (itself for a main row). */
static const struct ctl_command *canonical(const struct ctl_command *cmd)
{
	for (size_t i = 0; i < N_COMMANDS && !cmd->usage; i++)
		if (commands[i].handler == cmd->handler && commands[i].usage)
			return &commands[i];
	return cmd;
}

/* ", also NAME, NAME" for the other names of cmd, or "". */
static void other_names(const struct ctl_command *cmd, char *buf, size_t n)
{
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < N_COMMANDS; i++) {
		if (commands[i].usage || commands[i].handler != cmd->handler || len >= n)
			continue;
		len += (size_t)snprintf(buf + len, n - len, "%s%s",
					len ? ", " : " (also ", commands[i].name);
	}
	if (len && len < n)
		snprintf(buf + len, n - len, ")");
}

static void print_help(FILE *f)
{
	char also[128];

	fprintf(f, "usage: mvmctl [--socket PATH] [-o json] COMMAND [ARGS]\n"
		"       mvmctl COMMAND --help | --version\n\n"
		"Commands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++) {
		if (!commands[i].usage)
			continue;
		other_names(&commands[i], also, sizeof(also));
		fprintf(f, "  %-8s %s%s\n", commands[i].name, commands[i].summary, also);
	}
	fprintf(f, "\nOptions:\n"
		"  --socket PATH  mvmd's control socket (also $MVM_SOCKET;\n"
		"                 default " CTL_DEFAULT_SOCKET ")\n"
		"  -o json        JSON output, errors included (also after the command)\n"
		"  -h, --help     this text; after a command, that command's usage\n"
		"  -V, --version  mvmctl's version ('mvmctl version' asks mvmd too)\n"
		"\nSelectors: start, stop, restart, pause, resume, kill and rm take\n"
		"several NAMEs, or --label K=V (repeatable; VMs with all of them).\n"
		"They act on each VM in turn, go on after a failure and exit with\n"
		"the first failure's status; with -o json each VM's result or error is one JSON document.\n"
		"\nConsole: Ctrl-] (0x1d) detaches. With stdin not a terminal, the\n"
		"input is sent as it is; after its end mvmctl keeps printing the\n"
		"guest's output until mvmd closes the console or nothing arrived\n"
		"for --idle S seconds (default 2).\n"
		"\nExit status:\n"
		"  0  success\n"
		"  1  mvmd refused or failed the request (its message is printed)\n"
		"  2  usage error; nothing was sent\n"
		"  3  cannot connect to mvmd (socket missing, permission denied,\n"
		"     or the daemon went away)\n"
		"  75 mvmd refused it for now (unavailable: capacity, pool or quota\n"
		"     in use); the same request may succeed later\n"
		"\nRun 'mvmctl help COMMAND' or 'mvmctl COMMAND --help' for a command's usage.\n");
}

static const struct ctl_command *find_command(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return canonical(&commands[i]);
	return NULL;
}

/* Edit distance (insert, delete, substitute, swap two neighbours). */
static size_t distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), d[32][32];

	if (la >= 32 || lb >= 32)
		return SIZE_MAX;
	for (size_t i = 0; i <= la; i++)
		for (size_t j = 0; j <= lb; j++) {
			size_t v;

			if (!i || !j) {
				d[i][j] = i + j;
				continue;
			}
			v = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			if (d[i - 1][j] + 1 < v)
				v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	return d[la][lb];
}

/* The command a mistyped name most likely meant, or NULL: the closest
 * within 2 edits (1 for names of up to 3 letters). */
static const char *suggest(const char *name)
{
	size_t best = SIZE_MAX, limit = strlen(name) <= 3 ? 1 : 2;
	const char *found = NULL;

	for (size_t i = 0; i < N_COMMANDS; i++) {
		size_t dist = distance(name, commands[i].name);

		if (dist < best) {
			best = dist;
			found = commands[i].name;
		}
	}
	return best <= limit ? found : NULL;
}

static int unknown_command(const char *name)
{
	const char *s = suggest(name);

	if (s)
		return ctl_usage_error(NULL, "unknown command '%s'; did you mean '%s'?", name, s);
	return ctl_usage_error(NULL, "unknown command '%s'", name);
}

static void print_usage(const struct ctl_command *cmd)
{
	char also[128];

	other_names(cmd, also, sizeof(also));
	printf("usage: mvmctl %s\n  %s%s\n", cmd->usage, cmd->summary, also);
}

static int cmd_help(struct ctl *c, int argc, char **argv)
{
	const struct ctl_command *cmd;

	if (argc < 2) {
		print_help(stdout);
		return CTL_EXIT_OK;
	}
	cmd = find_command(argv[1]);
	if (!cmd)
		return unknown_command(argv[1]);
	print_usage(cmd);
	return CTL_EXIT_OK;
}

/* Prints "mvmctl: <what>" and the usage of cmd (or a pointer to help). */
int ctl_usage_error(const char *cmd, const char *fmt, ...)
{
	const struct ctl_command *c = cmd ? find_command(cmd) : NULL;
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ctl_error(CTL_EXIT_USAGE, "usage", "%s", msg);
	if (c)
		fprintf(stderr, "usage: mvmctl %s\n", c->usage);
	else
		fputs("Run 'mvmctl help' for the list of commands.\n", stderr);
	return CTL_EXIT_USAGE;
}

int ctl_parse_output(const char *arg, struct ctl *c)
{
	if (!strcmp(arg, "json") || !strcmp(arg, "table")) {
		c->json = !strcmp(arg, "json");
		output_set_json_errors(c->json);
		return 0;
	}
	return -EINVAL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "output", required_argument, NULL, 'o' },
		{ 0 }
	};
	struct ctl c = { .fd = -1 };
	const struct ctl_command *cmd;
	int o, r;

	c.socket_path = getenv("MVM_SOCKET");
	if (!c.socket_path || !*c.socket_path)
		c.socket_path = CTL_DEFAULT_SOCKET;
	/* '+': stop at the command name; its options are its own */
	opterr = 0;
	while ((o = getopt_long(argc, argv, "+hVo:", opts, NULL)) != -1) {
		if (o == 's') {
			c.socket_path = optarg;
		} else if (o == 'h') {
			return cmd_help(&c, 1, argv);
		} else if (o == 'V') {
			printf("mvmctl %s\n", MVM_VERSION);
			return CTL_EXIT_OK;
		} else if (o == 'o') {
			if (ctl_parse_output(optarg, &c) < 0)
				return ctl_usage_error(NULL, "-o wants json or table, not '%s'", optarg);
		} else {
			return ctl_usage_error(NULL, "unknown global option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return ctl_usage_error(NULL, "no command given");
	cmd = find_command(argv[optind]);
	if (!cmd)
		return unknown_command(argv[optind]);
	argc -= optind;
	argv += optind;
	/* COMMAND --help / -h, anywhere before "--": that command's usage */
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			print_usage(cmd);
			return CTL_EXIT_OK;
		}
	}
	optind = 0; /* 0 makes glibc reinitialise getopt for the command */
	r = cmd->handler(&c, argc, argv);
	ctl_disconnect(&c);
	if (fflush(stdout) != 0 && r == CTL_EXIT_OK)
		r = CTL_EXIT_DAEMON;
	return r;
}
