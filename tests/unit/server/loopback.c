/* Unit tests of http_addr_is_loopback (server/http.c): the address check behind /metrics'
 * "loopback callers only while SLUICE_METRICS_TOKEN is unset" (issue 13). The integration
 * tests can only connect from loopback, so the other side of the check is shown here. */
#include "http.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

static bool v4(const char *addr)
{
    struct sockaddr_in in;
    memset(&in, 0, sizeof in);
    in.sin_family = AF_INET;
    cr_assert_eq(inet_pton(AF_INET, addr, &in.sin_addr), 1, "%s", addr);
    return http_addr_is_loopback((const struct sockaddr *)&in);
}

static bool v6(const char *addr)
{
    struct sockaddr_in6 in6;
    memset(&in6, 0, sizeof in6);
    in6.sin6_family = AF_INET6;
    cr_assert_eq(inet_pton(AF_INET6, addr, &in6.sin6_addr), 1, "%s", addr);
    return http_addr_is_loopback((const struct sockaddr *)&in6);
}

Test(loopback, ipv4_127_slash_8_only)
{
    cr_assert(v4("127.0.0.1"));
    cr_assert(v4("127.255.3.9"));
    cr_assert(!v4("10.0.0.1"));
    cr_assert(!v4("192.168.1.127"));
    cr_assert(!v4("128.0.0.1"));
    cr_assert(!v4("0.0.0.0"));
}

Test(loopback, ipv6_loopback_and_mapped_ipv4)
{
    cr_assert(v6("::1"));
    cr_assert(v6("::ffff:127.0.0.1"));
    cr_assert(!v6("::ffff:10.1.2.3"));
    cr_assert(!v6("fe80::1"));
    cr_assert(!v6("::"));
}

Test(loopback, other_families_and_null_are_not)
{
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    cr_assert(!http_addr_is_loopback((const struct sockaddr *)&un));
    cr_assert(!http_addr_is_loopback(NULL));
}
