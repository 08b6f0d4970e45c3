/* Unit tests of server/deliveries.c (the retry backoff of each strategy) and of
 * server/consume.c's receipts. */
#include "consume.h"
#include "deliveries.h"

#include <criterion/criterion.h>

static group_policy policy(retry_strategy s, bool jitter)
{
    group_policy p = {5, 100, 1000, 30000, jitter, s};
    return p;
}

Test(deliveries, exponential_doubles_from_base_and_caps_at_max)
{
    group_policy p = policy(RETRY_EXPONENTIAL, false);
    long long want[] = {100, 200, 400, 800, 1000, 1000};
    for (int n = 1; n <= 6; n++) cr_assert_eq(deliveries_backoff_ms(&p, n, 7), want[n - 1], "attempt %d", n);
    cr_assert_eq(deliveries_backoff_ms(&p, 10000, 7), 1000, "no overflow on a huge attempt");
}

Test(deliveries, linear_grows_by_base_and_caps_at_max)
{
    group_policy p = policy(RETRY_LINEAR, false);
    long long want[] = {100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1000};
    for (int n = 1; n <= 11; n++) cr_assert_eq(deliveries_backoff_ms(&p, n, 7), want[n - 1], "attempt %d", n);
    cr_assert_eq(deliveries_backoff_ms(&p, 1LL << 60, 7), 1000, "no overflow on a huge attempt");
}

Test(deliveries, fixed_is_base_every_time)
{
    group_policy p = policy(RETRY_FIXED, false);
    for (int n = 1; n <= 5; n++) cr_assert_eq(deliveries_backoff_ms(&p, n, 7), 100);
}

Test(deliveries, jitter_stays_within_half_either_way_and_is_the_same_for_everyone)
{
    group_policy p = policy(RETRY_FIXED, true);
    bool below = false, above = false;
    for (long long pos = 1; pos <= 2000; pos++) {
        long long d = deliveries_backoff_ms(&p, 1, pos);
        cr_assert(d >= 50 && d <= 150, "position %lld: %lld", pos, d);
        cr_assert_eq(d, deliveries_backoff_ms(&p, 1, pos), "deterministic per (position, attempt)");
        below |= d < 100;
        above |= d > 100;
    }
    cr_assert(below && above, "spread on both sides of the base");
}

Test(deliveries, strategy_names_round_trip)
{
    cr_assert_eq(deliveries_strategy("linear"), RETRY_LINEAR);
    cr_assert_eq(deliveries_strategy("fixed"), RETRY_FIXED);
    cr_assert_eq(deliveries_strategy("exponential"), RETRY_EXPONENTIAL);
    cr_assert_eq(deliveries_strategy(NULL), RETRY_EXPONENTIAL);
    cr_assert_str_eq(deliveries_strategy_name(RETRY_LINEAR), "linear");
}

Test(consume, receipts_name_position_attempt_commit_time_and_consumer)
{
    consume_receipt r;
    cr_assert(consume_receipt_parse("42.3.1796624772698.worker-1.a:b", &r));
    cr_assert_eq(r.position, 42);
    cr_assert_eq(r.attempt, 3);
    cr_assert_eq(r.commit_ms, 1796624772698LL);
    cr_assert_str_eq(r.owner, "api:worker-1.a:b");
}

Test(consume, what_is_not_a_receipt)
{
    consume_receipt r;
    const char *bad[] = {NULL, "", "42", "42.1", "42.1.5", "42.1.5.", "0.1.5.w", "42.0.5.w",
                         "-1.1.5.w", "x.1.5.w", "42.1.5.w w", "42.1.5.w\"", " 42.1.5.w"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_not(consume_receipt_parse(bad[i], &r), "%s", bad[i] ? bad[i] : "NULL");
}
