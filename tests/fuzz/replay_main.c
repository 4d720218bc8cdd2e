/* replay_main.c - runs a libFuzzer target over saved inputs, without libFuzzer.
 *
 * Linked with one fuzz_<name>.c into replay_<name> (tests/fuzz/CMakeLists.txt), so
 * the corpus and any saved crash reproducers run under CTest in the normal gcc
 * Debug build (ASan + UBSan). Usage: replay_<name> FILE|DIR... (a directory: every
 * regular file in it, not recursive, in name order). Each input is copied into a
 * buffer of exactly its size, so a read past the end is caught by ASan.
 * Exit status: 0 when every input ran (a crash aborts), 1 on a usage or I/O error
 * or when no input was found.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional in a target, as in libFuzzer. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long n;
    int err = -1;

    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "replay: %s: cannot size\n", path);
        goto out;
    }
    buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "replay: %s: cannot read\n", path);
        goto out;
    }
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    err = 0;
out:
    free(buf);
    fclose(f);
    return err;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Runs every regular file of dir; returns how many, or -1. */
static int run_dir(const char *dir)
{
    struct dirent **names;
    char path[4096];
    struct stat st;
    int i, n, ran = 0, err = 0;

    n = scandir(dir, &names, NULL, by_name);
    if (n < 0) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    for (i = 0; i < n; i++) {
        int len = snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        if (len > 0 && (size_t)len < sizeof(path) && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(path) < 0)
                err = -1;
            else
                ran++;
        }
        free(names[i]);
    }
    free(names);
    return err < 0 ? -1 : ran;
}

int main(int argc, char **argv)
{
    struct stat st;
    int i, n, ran = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 1;
    }
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    for (i = 1; i < argc; i++) {
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        n = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i]) == 0 ? 1 : -1;
        if (n < 0)
            return 1;
        ran += n;
    }
    if (ran == 0) {
        fprintf(stderr, "replay: no inputs\n");
        return 1;
    }
    printf("replay: %d inputs ran\n%d passed, 0 failed\n", ran, ran);
    return 0;
}
