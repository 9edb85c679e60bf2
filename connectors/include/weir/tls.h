/*
 * tls.h - TLS client connections with OpenSSL's libssl, from PEM text
 * rather than files: a worker cannot open files (ADR 6), so the
 * supervisor reads weir.yaml's `tls` files and the text travels in the
 * job (docs/adr/0015-tls-material-in-workers.md). Used by the Redis
 * connector (rediss://); libpq does its own TLS (memfile.h).
 */
#ifndef WEIR_TLS_H
#define WEIR_TLS_H

#include "weir/common.h"

#include <openssl/ssl.h>
#include <stddef.h>

/* weir:cdef:begin */
/* OpenSSL's default CA bundle: $SSL_CERT_FILE, else the built-in path
 * (the file `tls: { ca: system }` names). A static string. */
WEIR_API const char *weir_ffi_tls_default_ca(void);
/* weir:cdef:end */

/*
 * A client context that verifies the peer against the certificates of
 * ca (PEM text, one or more) and, when cert is not NULL, presents cert
 * (PEM chain) with key (PEM private key). TLS 1.2 or later. NULL with
 * the reason in err; the key's text never appears there.
 */
SSL_CTX *weir_tls_client_ctx(const char *ca, const char *cert,
                             const char *key, char *err, size_t errlen);

/*
 * A connection over the connected socket fd (the caller keeps owning it;
 * writes never raise SIGPIPE) that checks the certificate is for host (a
 * name, or a numeric address matched against IP SANs) and sends host as
 * SNI when it is a name. NULL with the reason in err.
 */
SSL *weir_tls_new(SSL_CTX *ctx, int fd, const char *host, char *err,
                  size_t errlen);

/*
 * After an SSL_connect/SSL_read/SSL_write that returned ret <= 0: 1 with
 * the poll events to wait for in *events when the call should be repeated
 * once the socket is ready, else 0 with the reason in err (a certificate
 * verification failure says why: "certificate verify failed: ...").
 * *closed is set when the peer closed the connection.
 */
int weir_tls_retry(SSL *ssl, int ret, short *events, int *closed,
                   char *err, size_t errlen);

#endif
