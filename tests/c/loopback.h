/*
 * loopback.h - TCP on 127.0.0.1 for the brokered-connection tests
 * (tests/c/test_net.c, tests/c/test_interpose.c): a listener on a free
 * port, and the address of a port.
 */
#ifndef WEIR_TEST_LOOPBACK_H
#define WEIR_TEST_LOOPBACK_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

/* A listening socket on 127.0.0.1 and a free port (*port), or -1. */
static inline int listener(uint16_t *port)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t l = sizeof(a);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) != 0
        || listen(s, 8) != 0 || getsockname(s, (struct sockaddr *)&a, &l) != 0)
        return -1;
    *port = ntohs(a.sin_port);
    return s;
}

static inline struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

#endif
