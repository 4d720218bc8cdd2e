/* err.h - Shoal's error codes.
 *
 * Every function that can fail returns int: 0 (or a count) on success, a negative
 * code on failure. System errors are -errno (on Linux the same numbers as libuv's
 * UV_E*, so libuv results pass through untouched). Shoal's own codes sit below
 * -5000, clear of errno and of libuv's -3000 and -4095 blocks.
 */
#ifndef SHOAL_ERR_H
#define SHOAL_ERR_H

enum {
    SHOAL_EHASH = -5001,    /* content does not match its hash */
    SHOAL_EFORMAT = -5002,  /* malformed encoding (manifest, message, key file) */
    SHOAL_EVERSION = -5003, /* an encoding of a version this build does not read */
    SHOAL_ELIMIT = -5004,   /* a size, count or depth over its limit in protocol/proto_limits.h */
    SHOAL_EPEER = -5005,    /* a peer broke the protocol */
    SHOAL_EAUTH = -5006,    /* authentication failed */
    SHOAL_ESTORE = -5007,   /* the store failed */
    SHOAL_EHUB = -5008,     /* the hub failed or refused */
};

/* Returns a static, human-readable string for any code above (or a -errno). */
const char *shoal_strerror(int err);

#endif
