/* resil: the command-line tool. Dispatches `resil COMMAND ...` to the
 * cmd_*.c files and answers --help and --version itself. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "resil/version.h"

/* Every subcommand, in the order --help lists them. A new command is one
 * line here plus its cmd_*.c file. */
static const cli_command commands[] = {
    {"run", "run a command, retrying it with backoff and jitter", cmd_run_main, cmd_run_help},
    {"breaker", "list, show and reset the circuit breakers of run --breaker", cmd_breaker_main,
     cmd_breaker_help},
    {"http", "make an HTTP request like curl, retrying it safely", cmd_http_main, cmd_http_help},
    {"serve", "run an HTTP server that fails on purpose, to test clients", cmd_serve_main,
     cmd_serve_help},
    {"sim", "simulate retry storms: backoff, jitter, budgets, breakers", cmd_sim_main, cmd_sim_help},
    {"demo", "watch a retry storm hit an outage, then resil avoid it", cmd_demo_main,
     cmd_demo_help},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const cli_command *find_command(const char *name) {
  for (size_t i = 0; i < N_COMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0) return &commands[i];
  return NULL;
}

static void main_help(FILE *out) {
  fputs("Usage: resil COMMAND [OPTIONS] [ARG...]\n"
        "\n"
        "Call unreliable things safely: retries with backoff and jitter.\n"
        "\n"
        "Commands:\n",
        out);
  for (size_t i = 0; i < N_COMMANDS; i++)
    fprintf(out, "  %-15s %s\n", commands[i].name, commands[i].summary);
  fprintf(out, "  %-15s %s\n", "help [COMMAND]", "show help for resil or for COMMAND");
  fputs("\n"
        "Options:\n"
        "  -h, --help     show this help\n"
        "      --version  show the version\n"
        "\n"
        "Exit status: 0 on success, 64 for a usage error, 69 when a command needs\n"
        "a component this resil was built without. Beyond that each command has\n"
        "its own: `resil run` passes the command's status through, `resil http`\n"
        "uses curl's numbers (22 for an HTTP error, 7 for no connection, ...), and\n"
        "75 means a circuit is open or a retry budget is spent. 'resil COMMAND\n"
        "--help' and resil(1) list them all.\n"
        "\n"
        "Run 'resil COMMAND --help' for a command's options, and see resil(1).\n",
        out);
}

/* `resil help [COMMAND]`. */
static int help_main(int argc, char **argv) {
  if (argc < 2) {
    main_help(stdout);
    return CLI_EXIT_OK;
  }
  if (argc > 2) return cli_usage_error(NULL, "help: too many arguments");
  const cli_command *c = find_command(argv[1]);
  if (c == NULL) return cli_usage_error(NULL, "help: unknown command '%s'", argv[1]);
  c->help(stdout);
  return CLI_EXIT_OK;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    main_help(stderr);
    return CLI_EXIT_USAGE;
  }
  const char *arg = argv[1];
  if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
    main_help(stdout);
    return CLI_EXIT_OK;
  }
  if (strcmp(arg, "--version") == 0) {
    /* The library is linked statically, so the two cannot differ; say so
     * anyway in case that changes. */
    if (strcmp(resil_version(), RESIL_VERSION_STRING) == 0) printf("resil %s\n", resil_version());
    else printf("resil %s (library %s)\n", RESIL_VERSION_STRING, resil_version());
    return CLI_EXIT_OK;
  }
  if (strcmp(arg, "help") == 0) return help_main(argc - 1, argv + 1);
  if (arg[0] == '-') return cli_usage_error(NULL, "unknown option '%s'", arg);

  const cli_command *c = find_command(arg);
  if (c == NULL) return cli_usage_error(NULL, "unknown command '%s'", arg);
  return c->main(argc - 1, argv + 1);
}
