/*
 * doctor.h: `ternd doctor DOMAIN`: from this node's point of view, every
 * step of a federation link to DOMAIN, one line each with what is wrong
 * and how to fix it (doctor.c).
 */
#ifndef TERN_DOCTOR_H
#define TERN_DOCTOR_H

#include <stdint.h>

#include "config.h"

/* doctor_run: prints the checks; 0 if all passed, 1 if one failed, 2 for
 * a bad domain. Runs its own loop (the node need not be running). */
int doctor_run(const struct node_config *cfg, const uint8_t priv[32],
    const char *domain);

#endif
