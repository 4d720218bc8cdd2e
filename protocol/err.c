/* err.c - messages for the codes in err.h. */
#include "err.h"

#include <string.h>

const char *shoal_strerror(int err)
{
    switch (err) {
    case SHOAL_EHASH:
        return "content does not match its hash";
    case SHOAL_EFORMAT:
        return "malformed encoding";
    case SHOAL_EVERSION:
        return "unsupported format version";
    case SHOAL_ELIMIT:
        return "size or count over its limit";
    case SHOAL_EPEER:
        return "peer protocol error";
    case SHOAL_EAUTH:
        return "authentication failed";
    case SHOAL_ESTORE:
        return "store error";
    case SHOAL_EHUB:
        return "hub error";
    }
    if (err < 0 && err > -4096)
        return strerror(-err);
    return "unknown error";
}
