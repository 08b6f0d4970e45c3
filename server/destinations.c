/*
 * destinations.c — where Sluice may send a webhook (see destinations.h).
 */
#include "destinations.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* An IPv4 address (host order) as the ranges judge it. */
static bool v4_ok(uint32_t a, bool allow_private, const char **why)
{
    const char *w = NULL;
    bool always = true;
    if ((a >> 16) == 0xA9FE) w = "a link-local address (cloud metadata lives there)";
    else if (a == 0x646464C8) w = "a cloud metadata address"; /* 100.100.100.200 */
    else if ((a >> 24) == 0) w = "an unspecified address";
    else if ((a >> 28) == 0xE) w = "a multicast address";
    else if (a == 0xFFFFFFFF) w = "the broadcast address";
    else {
        always = false;
        if ((a >> 24) == 127) w = "a loopback address";
        else if ((a >> 24) == 10 || (a >> 20) == 0xAC1 || (a >> 16) == 0xC0A8)
            w = "a private address";
        else if ((a >> 22) == (0x64400000u >> 22)) w = "a shared (carrier-grade NAT) address";
    }
    if (!w || (!always && allow_private)) return true;
    if (why) *why = w;
    return false;
}

static bool v6_ok(const struct in6_addr *a, bool allow_private, const char **why)
{
    const uint8_t *b = a->s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    if (!memcmp(b, mapped, 12))
        return v4_ok((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15],
                     allow_private, why);
    const char *w = NULL;
    bool always = true;
    static const uint8_t imds[16] = {0xFD, 0x00, 0x0E, 0xC2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54};
    if (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) w = "a link-local address (cloud metadata lives there)";
    else if (!memcmp(b, imds, 16)) w = "a cloud metadata address";
    else if (IN6_IS_ADDR_UNSPECIFIED(a)) w = "an unspecified address";
    else if (b[0] == 0xFF) w = "a multicast address";
    else {
        always = false;
        if (IN6_IS_ADDR_LOOPBACK(a)) w = "a loopback address";
        else if ((b[0] & 0xFE) == 0xFC) w = "a private (unique-local) address";
    }
    if (!w || (!always && allow_private)) return true;
    if (why) *why = w;
    return false;
}

bool destinations_addr_ok(const struct sockaddr *sa, bool allow_private, const char **why)
{
    if (sa->sa_family == AF_INET)
        return v4_ok(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr), allow_private, why);
    if (sa->sa_family == AF_INET6)
        return v6_ok(&((const struct sockaddr_in6 *)sa)->sin6_addr, allow_private, why);
    if (why) *why = "not an IP address";
    return false;
}

bool destinations_ip_ok(const char *ip, bool allow_private, const char **why)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (ip && inet_pton(AF_INET, ip, &v4) == 1) return v4_ok(ntohl(v4.s_addr), allow_private, why);
    if (ip && inet_pton(AF_INET6, ip, &v6) == 1) return v6_ok(&v6, allow_private, why);
    if (why) *why = "not an IP address";
    return false;
}

dest_verdict destinations_url_check(const char *url, bool allow_private, char *why, size_t cap)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    dest_verdict v = DEST_INVALID;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") && strcmp(scheme, "https")) || !*host) {
        snprintf(why, cap, "url must be an absolute http or https URL with a host");
        goto out;
    }
    /* "[::1]" → "::1" for the resolver */
    char name[256];
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']')
        snprintf(name, sizeof name, "%.*s", (int)(hl - 2), host + 1);
    else
        snprintf(name, sizeof name, "%s", host);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(name, NULL, &hints, &res) != 0 || !res) {
        snprintf(why, cap, "the host '%s' does not resolve", name);
        v = DEST_UNRESOLVED;
        goto out;
    }
    v = DEST_OK;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        const char *w = NULL;
        if (destinations_addr_ok(ai->ai_addr, allow_private, &w)) continue;
        char text[INET6_ADDRSTRLEN] = "?";
        const void *raw = ai->ai_family == AF_INET
                              ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                              : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        inet_ntop(ai->ai_family, raw, text, sizeof text);
        snprintf(why, cap, "the host '%s' resolves to %s, %s%s", name, text, w,
                 allow_private || strstr(w, "link-local") || strstr(w, "metadata") ||
                         strstr(w, "unspecified") || strstr(w, "multicast") ||
                         strstr(w, "broadcast")
                     ? ""
                     : " (allowed with SLUICE_WEBHOOK_ALLOW_PRIVATE=1)");
        v = DEST_FORBIDDEN;
        break;
    }
    freeaddrinfo(res);
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return v;
}
