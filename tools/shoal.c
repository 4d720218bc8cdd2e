/* shoal.c - the shoal tool: finds the subcommand and runs it.
 *
 * Every subcommand but `hash` and `keygen` talks to the local node over its control
 * socket; those arrive with the node (see docs/). The table below is the whole list.
 */
#include "cmd.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct cmd *const commands[] = {
    &cmd_hash_def,
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

    fputs("Usage: shoal [--help] [--version] COMMAND [ARGS...]\n"
          "\n"
          "Shoal moves model files between the machines of a cluster: each machine runs\n"
          "a node (shoald) and this tool talks to it.\n"
          "\n"
          "Commands:\n",
          f);
    for (i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
    fputs("\nRun `shoal COMMAND --help` for a command's options.\n"
          "Exit status: 0 success, 1 failure, 2 usage error.\n",
          f);
}

int main(int argc, char **argv)
{
    size_t i;

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
