/*
 * admin.h: operator actions shared by the running node (loopback HTTP
 * admin endpoints) and the ternd CLI when no node is running.
 */
#ifndef TERN_ADMIN_H
#define TERN_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "store.h"
#include "tern_err.h"

#define ADMIN_INVITE_LEN 19   /* "xxxx-xxxx-xxxx-xxxx" */
#define ADMIN_INVITE_MAX 1000 /* codes per call */

/*
 * admin_invite_create: makes count one-time registration codes valid for
 * ttl_ms, submits their hashes to the store, and writes the codes, one per
 * line, to out. cb runs once per code when its hash is committed (a code is
 * usable only then). Returns how many were submitted in *submitted.
 */
int admin_invite_create(struct store *st, unsigned count, uint64_t ttl_ms,
    struct buf_writer *out, store_cb cb, void *arg,
    unsigned *submitted) TERN_WUR;

/* admin_invite_hash: the store's key for a code as the user typed it. */
void admin_invite_hash(const char *code, size_t len,
    uint8_t hash[STORE_INVITE_HASH_LEN]);

#endif
