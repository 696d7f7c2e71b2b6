/* SPDX-License-Identifier: MIT */
/*
 * mvmctl: the command-line client of mvmd. main.c holds the global options,
 * the command table and `help`; each command group lives in its own file.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"

static int cmd_help(struct ctl *c, int argc, char **argv);

static const struct ctl_command commands[] = {
	{ "create", vm_create,
	  "create NAME --kernel PATH [--initrd PATH] [--cmdline S] [--vcpus N]\n"
	  "       [--mem SIZE] [--disk PATH[,ro]]... [--net tap=IF[,mac=M]]...\n"
	  "       [--label K=V]... [--restart no|on-failure[:N]|always]\n"
	  "       [--pool NAME]... [--no-start] [--no-queue] [--autostart] [--wait]\n"
	  "       [-o json]",
	  "define a VM and start it (SIZE: 256, 256M, 1.5G, 2048K; MiB by default); it counts\n"
	  "       in each --pool; --no-queue fails instead of waiting for a start slot" },
	{ "start", vm_start, "start NAME [-o json]", "start a created or stopped VM" },
	{ "stop", vm_stop, "stop NAME [--timeout S] [-o json]",
	  "Ctrl-Alt-Del, then kill after S seconds (default 10)" },
	{ "kill", vm_kill, "kill NAME [--signal SIG] [-o json]",
	  "send SIG (default SIGKILL) to the VM's worker" },
	{ "rm", vm_rm, "rm [-f] NAME", "delete a VM (-f: kill it first if running)" },
	{ "list", list_list, "list [--state S] [--label K=V]... [-q] [-o json]",
	  "list VMs you may see (-q: names only)" },
	{ "show", list_show, "show NAME [-o json]", "a VM's definition, state and events" },
	{ "console", console_console, "console NAME [--idle S]",
	  "attach to the serial console; Ctrl-] detaches" },
	{ "logs", console_logs, "logs NAME [-f] [--tail N]",
	  "print the console log (-f: keep following)" },
	{ "events", console_events, "events [--vm NAME] [-o json]",
	  "stream lifecycle events until interrupted" },
	{ "host", host_host, "host [-o json] | host set KEY=VALUE [-o json]",
	  "host capacity, limits and usage; set changes a limit until restart or SIGHUP" },
	{ "version", host_version, "version [-o json]", "mvmctl, mvmd and protocol versions" },
	{ "help", cmd_help, "help [COMMAND]", "this text" },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void print_help(FILE *f)
{
	fprintf(f, "usage: mvmctl [--socket PATH] COMMAND [ARGS]\n\n"
		"Commands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nOptions:\n"
		"  --socket PATH  mvmd's control socket (also $MVM_SOCKET;\n"
		"                 default " CTL_DEFAULT_SOCKET ")\n"
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
		"\nRun 'mvmctl help COMMAND' for a command's usage.\n");
}

static const struct ctl_command *find_command(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
	return NULL;
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
		return ctl_usage_error(NULL, "unknown command '%s'", argv[1]);
	printf("usage: mvmctl %s\n  %s\n", cmd->usage, cmd->summary);
	return CTL_EXIT_OK;
}

/* Prints "mvmctl: <what>" and the usage of cmd (or a pointer to help). */
int ctl_usage_error(const char *cmd, const char *fmt, ...)
{
	const struct ctl_command *c = cmd ? find_command(cmd) : NULL;
	va_list ap;

	fputs("mvmctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (c)
		fprintf(stderr, "usage: mvmctl %s\n", c->usage);
	else
		fputs("Run 'mvmctl help' for the list of commands.\n", stderr);
	return CTL_EXIT_USAGE;
}

int ctl_parse_output(const char *arg, struct ctl *c)
{
	if (!strcmp(arg, "json")) {
		c->json = true;
		return 0;
	}
	if (!strcmp(arg, "table")) {
		c->json = false;
		return 0;
	}
	return -EINVAL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	struct ctl c = { .fd = -1 };
	const struct ctl_command *cmd;
	int o, r;

	c.socket_path = getenv("MVM_SOCKET");
	if (!c.socket_path || !*c.socket_path)
		c.socket_path = CTL_DEFAULT_SOCKET;
	/* '+': stop at the command name; its options are its own */
	while ((o = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		if (o == 's')
			c.socket_path = optarg;
		else if (o == 'h')
			return cmd_help(&c, 1, argv);
		else
			return ctl_usage_error(NULL, "unknown global option");
	}
	if (optind >= argc)
		return ctl_usage_error(NULL, "no command given");
	cmd = find_command(argv[optind]);
	if (!cmd)
		return ctl_usage_error(NULL, "unknown command '%s'", argv[optind]);
	argc -= optind;
	argv += optind;
	optind = 0; /* 0 makes glibc reinitialise getopt for the command */
	r = cmd->handler(&c, argc, argv);
	ctl_disconnect(&c);
	if (fflush(stdout) != 0 && r == CTL_EXIT_OK)
		r = CTL_EXIT_DAEMON;
	return r;
}
