/*
 * common.c - small helpers every unit uses: the ABI version probe and the
 * bounded error formatter. Relies on nothing but libc.
 */
#include "weir/common.h"

#include <stdarg.h>
#include <stdio.h>

WEIR_API int weir_ffi_abi_version(void)
{
    return WEIR_ABI_VERSION;
}

void weir_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
