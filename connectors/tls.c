/*
 * tls.c - TLS client connections from PEM text (tls.h). The socket BIO
 * is ours: OpenSSL's writes with write(), which raises SIGPIPE on a
 * closed peer in workers; ours uses send(MSG_NOSIGNAL). Relies on
 * OpenSSL 3 (libssl, libcrypto).
 */
#include "weir/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

WEIR_API const char *weir_ffi_tls_default_ca(void)
{
    const char *env = getenv(X509_get_default_cert_file_env());
    return env != NULL && env[0] != '\0' ? env : X509_get_default_cert_file();
}

/* OpenSSL's last error as text (it names the failing step, never data) */
static void ssl_reason(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char buf[256];

    ERR_error_string_n(e, buf, sizeof buf);
    weir_set_err(err, errlen, "%s: %s", what,
                 e != 0 ? ERR_reason_error_string(e) != NULL
                              ? ERR_reason_error_string(e) : buf
                        : "unknown error");
    ERR_clear_error();
}

SSL_CTX *weir_tls_client_ctx(const char *ca, const char *cert,
                             const char *key, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    BIO *bio = NULL;
    X509 *x = NULL;
    EVP_PKEY *pk = NULL;
    int n = 0;

    ERR_clear_error();
    if (ctx == NULL) {
        ssl_reason(err, errlen, "tls");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                              | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* the CA's certificates */
    bio = BIO_new_mem_buf(ca, -1);
    while (bio != NULL
           && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x) != 1) {
            X509_free(x);
            ssl_reason(err, errlen, "tls ca");
            goto fail;
        }
        X509_free(x);
        n++;
    }
    BIO_free(bio);
    bio = NULL;
    if (n == 0) {
        weir_set_err(err, errlen, "tls ca: no certificate in it");
        goto fail;
    }
    ERR_clear_error(); /* the end of the PEM text */
    if (cert != NULL) {
        bio = BIO_new_mem_buf(cert, -1);
        x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        if (x == NULL || SSL_CTX_use_certificate(ctx, x) != 1) {
            X509_free(x);
            ssl_reason(err, errlen, "tls cert");
            goto fail;
        }
        X509_free(x);
        /* the rest of the chain */
        while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
            if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
                X509_free(x);
                ssl_reason(err, errlen, "tls cert");
                goto fail;
            }
        }
        ERR_clear_error();
        BIO_free(bio);
        bio = BIO_new_mem_buf(key != NULL ? key : "", -1);
        pk = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)
                         : NULL;
        if (pk == NULL || SSL_CTX_use_PrivateKey(ctx, pk) != 1
            || SSL_CTX_check_private_key(ctx) != 1) {
            EVP_PKEY_free(pk);
            ssl_reason(err, errlen, "tls key");
            goto fail;
        }
        EVP_PKEY_free(pk);
        BIO_free(bio);
        bio = NULL;
    }
    return ctx;
fail:
    BIO_free(bio);
    SSL_CTX_free(ctx);
    return NULL;
}

/* ---- the socket BIO ------------------------------------------------------ */

static int bio_write(BIO *b, const char *data, int len)
{
    ssize_t n = send((int)(intptr_t)BIO_get_data(b), data, (size_t)len,
                     MSG_NOSIGNAL);

    BIO_clear_retry_flags(b);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)n;
}

static int bio_read(BIO *b, char *data, int len)
{
    ssize_t n = recv((int)(intptr_t)BIO_get_data(b), data, (size_t)len, 0);

    BIO_clear_retry_flags(b);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *socket_method(void)
{
    static BIO_METHOD *m;

    if (m == NULL && (m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                       "weir socket")) != NULL) {
        BIO_meth_set_write(m, bio_write);
        BIO_meth_set_read(m, bio_read);
        BIO_meth_set_ctrl(m, bio_ctrl);
        BIO_meth_set_create(m, bio_create);
    }
    return m;
}

SSL *weir_tls_new(SSL_CTX *ctx, int fd, const char *host, char *err,
                  size_t errlen)
{
    unsigned char addr[16];
    BIO_METHOD *m = socket_method();
    SSL *ssl = m != NULL ? SSL_new(ctx) : NULL;
    BIO *bio = ssl != NULL ? BIO_new(m) : NULL;
    int ip = inet_pton(AF_INET, host, addr) == 1
             || inet_pton(AF_INET6, host, addr) == 1;

    if (bio == NULL) {
        SSL_free(ssl);
        ssl_reason(err, errlen, "tls");
        return NULL;
    }
    BIO_set_data(bio, (void *)(intptr_t)fd);
    SSL_set_bio(ssl, bio, bio);
    if (ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1
           : SSL_set1_host(ssl, host) != 1
                 || SSL_set_tlsext_host_name(ssl, host) != 1) {
        SSL_free(ssl);
        ssl_reason(err, errlen, "tls host name");
        return NULL;
    }
    return ssl;
}

int weir_tls_retry(SSL *ssl, int ret, short *events, int *closed,
                   char *err, size_t errlen)
{
    int e = SSL_get_error(ssl, ret);
    long v;

    *closed = 0;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        return 1;
    }
    if (e == SSL_ERROR_SYSCALL && errno == EINTR) {
        *events = POLLIN | POLLOUT;
        return 1;
    }
    v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK) {
        weir_set_err(err, errlen, "tls: certificate verify failed: %s",
                     X509_verify_cert_error_string(v));
    } else if (e == SSL_ERROR_ZERO_RETURN
               || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
        *closed = 1;
        weir_set_err(err, errlen, "tls: %s", ret == 0 || errno == 0
                     ? "server closed the connection" : strerror(errno));
    } else {
        ssl_reason(err, errlen, "tls");
    }
    ERR_clear_error();
    return 0;
}
