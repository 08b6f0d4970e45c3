/*
 * destinations.h — where Sluice may send a webhook (server-side request forgery).
 *
 * An address is refused always when it is link-local (169.254.0.0/16, fe80::/10:
 * the cloud metadata services live there — 169.254.169.254, fd00:ec2::254 and
 * Alibaba's 100.100.100.200 are named too), unspecified, multicast or broadcast;
 * and refused unless SLUICE_WEBHOOK_ALLOW_PRIVATE=1 when it is loopback
 * (127.0.0.0/8, ::1) or private (10/8, 172.16/12, 192.168/16, 100.64/10 shared,
 * fc00::/7 unique-local). An IPv4-mapped IPv6 address is judged as its IPv4.
 * A URL is checked at registration (every address its host resolves to), and
 * each delivery checks the address libcurl actually connected to, so a name
 * that later resolves elsewhere (DNS rebinding) is caught.
 */
#ifndef SLUICE_DESTINATIONS_H
#define SLUICE_DESTINATIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Whether the address may be connected to; *why names the range when not. */
bool destinations_addr_ok(const struct sockaddr *sa, bool allow_private, const char **why);
/* The same for an address in text form (libcurl's CURLINFO_PRIMARY_IP). */
bool destinations_ip_ok(const char *ip, bool allow_private, const char **why);

/* What destinations_url_check found. */
typedef enum {
    DEST_OK = 0,
    DEST_INVALID,   /* not an absolute http(s) URL with a host */
    DEST_FORBIDDEN, /* the host is, or resolves to, a refused address */
    DEST_UNRESOLVED /* the host does not resolve (now) */
} dest_verdict;
/* Checks a webhook URL: http or https, a host, and every address the host resolves to.
 * `why` gets a sentence for the problem's detail. */
dest_verdict destinations_url_check(const char *url, bool allow_private, char *why, size_t cap);

#endif
