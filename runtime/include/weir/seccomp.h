/*
 * seccomp.h - the system-call filter a worker installs on itself once it
 * is locked down: the last layer, for code that escaped the Lua sandbox.
 * An allow-list (seccomp.c, ADR 43): any other call kills the process
 * with SIGSYS, a few that libraries probe fail with EPERM.
 */
#ifndef WEIR_SECCOMP_H
#define WEIR_SECCOMP_H

#include "weir/common.h"

/* Install the filter (irrevocable). 0 on success, -1 when the kernel or
 * the architecture does not allow it (errno set). Needs no_new_privs. */
int weir_seccomp_install(void);

#endif
