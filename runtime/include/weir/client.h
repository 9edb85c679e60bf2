/*
 * client.h - a blocking HTTP/1.1 exchange, for the command line as a
 * client of weir serve (weir trigger, weir runs --server ...). The
 * request is built and the answer parsed in Lua (weir.client); this unit
 * only connects, writes and reads, with a deadline.
 */
#ifndef WEIR_CLIENT_H
#define WEIR_CLIENT_H

#include "weir/common.h"

/* weir:cdef:begin */
/* Connect to host (an address or a name) and port, send req (len bytes:
 * a whole request with "Connection: close"), read the answer until the
 * server closes, at most max bytes. timeout_ms bounds the whole exchange.
 * ca: NULL for plain HTTP; else HTTPS, the server's certificate checked
 * against ca (PEM text) and against host.
 * *out (answer, *outlen bytes, NUL-terminated) is the caller's, freed with
 * weir_ffi_client_free. Returns WEIR_OK, WEIR_EIO (connect, write, read:
 * err says which), WEIR_ELIMIT (answer over max) or WEIR_ETIMEOUT. */
WEIR_API int weir_ffi_http_exchange(const char *host, int32_t port,
                                    const char *ca,
                                    const char *req, size_t len,
                                    int32_t timeout_ms, size_t max,
                                    char **out, size_t *outlen, char *err,
                                    size_t errlen);
WEIR_API void weir_ffi_client_free(char *p);
/* weir:cdef:end */

#endif
