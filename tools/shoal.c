/* shoal.c - the shoal tool: reads the global options, finds the subcommand, runs it.
 *
 * Every subcommand but `hash` and `keygen` talks to the local node over its control
 * socket (client.h); the global options say where that is. The table below is the
 * whole list.
 */
#include "cmd.h"

#include "client.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct cmd *const commands[] = {
    &cmd_status_def, &cmd_pull_def,   &cmd_ls_def,   &cmd_rm_def,
    &cmd_gc_def,     &cmd_check_def,  &cmd_peers_def,  &cmd_import_def, &cmd_hash_def, &cmd_keygen_def,
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

void tool_err(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "shoal %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int tool_usage(const struct cmd *c)
{
    fputs(c->usage, stderr);
    return EXIT_USAGE;
}

static void print_help(FILE *f)
{
    size_t i;

    fputs("Usage: shoal [--data-dir DIR | --socket PATH] [--help] [--version] COMMAND [ARGS...]\n"
          "\n"
          "Shoal moves model files between the machines of a cluster: each machine runs\n"
          "a node (shoald) and this tool talks to it.\n"
          "\n"
          "Finding the node (before COMMAND):\n"
          "  --data-dir DIR   the node's data directory (its socket is DIR/shoald.sock);\n"
          "                   also $SHOAL_DATA_DIR\n"
          "  --socket PATH    the node's control socket; also $SHOAL_SOCKET, which wins\n"
          "                   over $SHOAL_DATA_DIR\n"
          "\n"
          "Commands:\n",
          f);
    for (i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
    fputs("\nRun `shoal COMMAND --help` for a command's options.\n"
          "Exit status: 0 success, 1 failure, 2 usage error.\n",
          f);
}

/* Whether argv[*pi] is global option `name`, as "--name VALUE" or "--name=VALUE".
 * Returns 1 and sets *pval (moving *pi past a separate value), 0 when it is another
 * argument, -1 after a usage error. */
static int global_opt(int argc, char **argv, int *pi, const char *name, const char **pval)
{
    const char *arg = argv[*pi];
    size_t len = strlen(name);

    if (strncmp(arg, name, len) != 0 || (arg[len] != '\0' && arg[len] != '='))
        return 0;
    if (arg[len] == '=') {
        *pval = arg + len + 1;
    } else if (*pi + 1 < argc) {
        *pval = argv[++*pi];
    } else {
        fprintf(stderr, "shoal: %s needs a value\n", name);
        return -1;
    }
    if (!**pval) {
        fprintf(stderr, "shoal: %s is empty\n", name);
        return -1;
    }
    return 1;
}

/* Reads the global options; returns the index of the first other argument, or -1
 * after a usage error. */
static int parse_globals(int argc, char **argv)
{
    const char *data_dir = NULL, *sock = NULL;
    int i, r;

    for (i = 1; i < argc; i++) {
        r = global_opt(argc, argv, &i, "--data-dir", &data_dir);
        if (r == 0)
            r = global_opt(argc, argv, &i, "--socket", &sock);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
    }
    if (data_dir && sock) {
        fprintf(stderr, "shoal: give --data-dir or --socket, not both\n");
        return -1;
    }
    client_set_target(data_dir, sock);
    return i;
}

int main(int argc, char **argv)
{
    size_t i;
    int first = parse_globals(argc, argv);

    if (first < 0)
        return EXIT_USAGE;
    /* From here on argv[1] is the command, whatever global options came before it. */
    argc -= first - 1;
    argv += first - 1;
    if (argc < 2) {
        print_help(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        if (argc > 2) {
            for (i = 0; i < N_COMMANDS; i++) {
                if (strcmp(argv[2], commands[i]->name) == 0) {
                    fputs(commands[i]->usage, stdout);
                    return 0;
                }
            }
            fprintf(stderr, "shoal: unknown command '%s'\n", argv[2]);
            return EXIT_USAGE;
        }
        print_help(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("shoal %s\n", SHOAL_VERSION);
        return 0;
    }
    for (i = 0; i < N_COMMANDS; i++) {
        if (strcmp(argv[1], commands[i]->name) == 0)
            return commands[i]->fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "shoal: unknown command '%s' (see shoal --help)\n", argv[1]);
    return EXIT_USAGE;
}
