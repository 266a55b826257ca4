/* bench_e2e.h: tern-bench's "e2e" scenario (bench_e2e.c). */
#ifndef TERN_BENCH_E2E_H
#define TERN_BENCH_E2E_H

#include <stdbool.h>

/* Runs the scenario and hands each figure to report(name, value, unit,
 * target). */
void bench_e2e(bool quick, void (*report)(const char *, double,
    const char *, const char *));

#endif
