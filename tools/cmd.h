/* cmd.h - the shoal tool's subcommands and what they share.
 *
 * Each subcommand is `int cmd_<name>(int argc, char **argv)` in its own file,
 * returning the process exit status: 0 success, 1 failure (after one clear line on
 * stderr), 2 usage error (after the usage on stderr).
 */
#ifndef SHOAL_CMD_H
#define SHOAL_CMD_H

#define EXIT_USAGE 2

struct cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
    const char *usage; /* full help text, printed by --help */
};

extern const struct cmd cmd_hash_def;
extern const struct cmd cmd_keygen_def;
/* The node commands (client.h): they speak the control API. */
extern const struct cmd cmd_status_def;
extern const struct cmd cmd_pull_def;
extern const struct cmd cmd_ls_def;
extern const struct cmd cmd_rm_def;
extern const struct cmd cmd_gc_def;
extern const struct cmd cmd_check_def;
extern const struct cmd cmd_peers_def;
extern const struct cmd cmd_import_def;

/* Prints "shoal <cmd>: <message>" on stderr. */
void tool_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the command's usage to stderr and returns EXIT_USAGE. */
int tool_usage(const struct cmd *c);

#endif
