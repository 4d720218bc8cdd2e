/* util.h - small helpers the node commands share: human-readable sizes and
 * durations, option parsing, repository operands, absolute paths, and tolerant reads
 * of JSON fields.
 *
 * Threads: none of this keeps state; call from any thread.
 * Ownership: functions that return char * return a malloc'd string the caller frees.
 */
#ifndef SHOAL_TOOL_UTIL_H
#define SHOAL_TOOL_UTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UTIL_SIZE_LEN 24 /* "1023.9 GiB", "99d23h" and the like, with room to spare */

/* Writes n bytes as "712 B", "1.5 KiB", "2.0 GiB" (binary units) into out. */
void util_size(uint64_t n, char out[static UTIL_SIZE_LEN]);

/* Writes a duration in seconds as "42s", "3m05s", "2h03m", "5d02h" into out. */
void util_duration(uint64_t s, char out[static UTIL_SIZE_LEN]);

/* Splits "org/name@rev" at the last '@' into a repo and a revision (NULL when the
 * operand has no '@'). Light checks only (the node validates fully): the repo is
 * non-empty and has no white space, the revision is non-empty. Returns 0, or -1 after
 * printing why with tool_err(cmd, ...); *prepo and *prev are then left untouched. */
int util_repo_rev(const char *cmd, const char *arg, char **prepo, char **prev);

/* Whether s is one of the repo types the control API knows. */
bool util_repo_type_ok(const char *s);

/* The absolute form of path: joined to the working directory when relative, then
 * "." and ".." and repeated slashes removed lexically, as Python's os.path.abspath
 * does (so a path means what it means to the Hugging Face tools). NULL on failure
 * (errno set). */
char *util_abspath(const char *path);

/* The Hugging Face hub cache root from this process's environment, the way
 * huggingface_hub finds it (spec/hub-protocol.md section 2.1): HF_HUB_CACHE, else
 * HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
 * Absolute. NULL with errno set when none can be made (no HOME). */
char *util_hf_cache(void);

/* Tolerant JSON reads: the value, or def / 0 when the key is missing or of another
 * type (the node is trusted to be right, but must never crash the tool). */
const char *util_jstr(const json_t *obj, const char *key, const char *def);
uint64_t util_juint(const json_t *obj, const char *key);

/* Reading a node command's own arguments with getopt_long(). The parsers return 0 to
 * go on, UTIL_HELP after printing the usage for --help (the command then exits 0), or
 * the exit status to leave with after saying why. */
#define UTIL_HELP (-1)

struct cmd;

/* Starts getopt_long() afresh on a command's argv, quiet: util_opt_other() words the
 * errors, in the tool's "shoal <cmd>: " form. */
void util_opt_reset(void);

/* For an option the command does not handle itself: 'h' prints c's usage on stdout and
 * returns UTIL_HELP; anything else is util_bad_option()'s. */
int util_opt_other(const struct cmd *c, int opt, int argc, char **argv);

/* For getopt_long's '?' answer: names the bad option on stderr, then prints c's usage.
 * Returns EXIT_USAGE. */
int util_bad_option(const struct cmd *c, int argc, char **argv);

/* The whole parser of a command that takes no operands and no options but --help and,
 * when pjson is not NULL, --json (which sets *pjson). */
int util_parse_no_operands(const struct cmd *c, int argc, char **argv, bool *pjson);

/* The checks the commands on one repository share once their options are read: type
 * is a repo type, then exactly one operand is left, called operand in the messages
 * ("no REPO given"). Returns 0, or EXIT_USAGE after the message and c's usage. */
int util_check_repo_args(const struct cmd *c, const char *type, int argc, char **argv,
                         const char *operand);

/* Prints j on stdout as one indented document and a newline. */
void util_print_json(const json_t *j);

/* Flushes stdout; when it could not be written, says so for cmd and returns 1.
 * Otherwise returns status. Each command ends with it. */
int util_finish(const char *cmd, int status);

#endif
