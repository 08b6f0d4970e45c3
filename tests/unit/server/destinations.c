/* Unit tests of server/destinations.c: which addresses a webhook may reach. */
#include "destinations.h"

#include <criterion/criterion.h>

Test(destinations, link_local_and_metadata_are_refused_always)
{
    const char *always[] = {"169.254.169.254", "169.254.0.1", "fe80::1", "fd00:ec2::254",
                            "100.100.100.200", "0.0.0.0", "::", "224.0.0.1", "ff02::1",
                            "255.255.255.255", "::ffff:169.254.169.254"};
    for (size_t i = 0; i < sizeof always / sizeof always[0]; i++) {
        const char *why = NULL;
        cr_assert_not(destinations_ip_ok(always[i], true, &why), "%s allowed", always[i]);
        cr_assert(why != NULL);
    }
}

Test(destinations, loopback_and_private_only_when_allowed)
{
    const char *priv[] = {"127.0.0.1", "127.5.5.5", "::1", "10.1.2.3", "172.16.0.1",
                          "172.31.255.255", "192.168.1.1", "100.64.0.1", "fc00::1", "fd12::1",
                          "::ffff:127.0.0.1"};
    for (size_t i = 0; i < sizeof priv / sizeof priv[0]; i++) {
        cr_assert_not(destinations_ip_ok(priv[i], false, NULL), "%s allowed by default", priv[i]);
        cr_assert(destinations_ip_ok(priv[i], true, NULL), "%s refused when allowed", priv[i]);
    }
}

Test(destinations, public_addresses_pass)
{
    const char *pub[] = {"93.184.216.34", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:2800::1"};
    for (size_t i = 0; i < sizeof pub / sizeof pub[0]; i++)
        cr_assert(destinations_ip_ok(pub[i], false, NULL), "%s refused", pub[i]);
}

Test(destinations, urls_need_http_and_a_host_and_resolve_to_allowed_addresses)
{
    char why[256];
    cr_assert_eq(destinations_url_check("ftp://example.com/", true, why, sizeof why), DEST_INVALID);
    cr_assert_eq(destinations_url_check("not a url", true, why, sizeof why), DEST_INVALID);
    cr_assert_eq(destinations_url_check("http://127.0.0.1:9/x", false, why, sizeof why), DEST_FORBIDDEN);
    cr_assert_eq(destinations_url_check("http://localhost:9/x", false, why, sizeof why), DEST_FORBIDDEN,
                 "a name that resolves to loopback: %s", why);
    cr_assert_eq(destinations_url_check("http://127.0.0.1:9/x", true, why, sizeof why), DEST_OK);
    cr_assert_eq(destinations_url_check("http://169.254.169.254/latest/meta-data", true, why, sizeof why),
                 DEST_FORBIDDEN);
    cr_assert_eq(destinations_url_check("http://[::1]:9/", false, why, sizeof why), DEST_FORBIDDEN);
}
