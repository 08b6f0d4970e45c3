/* Unit tests of server/webhook_sign.c, against the Standard Webhooks specification's own
 * example (its README: secret, msg id, timestamp, payload and the signature it expects). */
#include "webhook_sign.h"

#include <criterion/criterion.h>
#include <string.h>

Test(webhook_sign, the_standard_webhooks_test_vector)
{
    char sig[WEBHOOK_SIGNATURE_MAX];
    const char *body = "{\"test\": 2432232314}";
    cr_assert(webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                           1614265330, body, strlen(body), sig));
    cr_assert_str_eq(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

Test(webhook_sign, new_secrets_are_whsec_base64_of_24_bytes_and_differ)
{
    char a[WEBHOOK_SECRET_MAX] = {0}, b[WEBHOOK_SECRET_MAX] = {0};
    cr_assert(webhook_secret_new(a));
    cr_assert(webhook_secret_new(b));
    cr_assert_eq(strncmp(a, "whsec_", 6), 0);
    cr_assert_eq(strlen(a), 6 + 32, "%s", a);
    cr_assert_str_neq(a, b);
    char sig[WEBHOOK_SIGNATURE_MAX];
    cr_assert(webhook_sign(a, "id", 1, "{}", 2, sig), "a new secret signs");
}

Test(webhook_sign, what_is_not_a_secret)
{
    char sig[WEBHOOK_SIGNATURE_MAX];
    cr_assert_not(webhook_sign("whsec_", "id", 1, "{}", 2, sig));
    cr_assert_not(webhook_sign("whsec_abc", "id", 1, "{}", 2, sig), "not base64 of whole quanta");
}
