/* Unit tests of server/config.c: defaults, environment, flags. */
#include "config.h"

#include <criterion/criterion.h>
#include <stdlib.h>

static void clear_env(void)
{
    unsetenv("SLUICE_HTTP_PORT");
    unsetenv("SLUICE_AUTH");
    unsetenv("SLUICE_MAX_BATCH");
    unsetenv("SLUICE_HTTP_TIMEOUT_MS");
    unsetenv("SLUICE_POOL_QUEUE");
    unsetenv("SLUICE_MAX_CATCHUPS");
}

Test(config, defaults_match_the_api_table, .init = clear_env)
{
    sluice_config c;
    char *argv[] = {"sluice"};
    cr_assert_eq(config_load(&c, 1, argv, 1), 0);
    cr_assert_eq(c.http_port, 8080);
    cr_assert_eq(c.ws_port, 8081);
    cr_assert_str_eq(c.bind, "127.0.0.1");
    cr_assert(c.auth);
    cr_assert_not(c.allow_unknown_types);
    cr_assert_str_eq(c.redis_prefix, "sluice:");
    cr_assert_eq(c.redis_maxlen, 1000000);
    cr_assert_eq(c.max_body_bytes, 4 * 1024 * 1024);
    cr_assert_eq(c.max_batch, 1000);
    cr_assert_str_eq(c.log_level, "info");
    config_dispose(&c);
}

Test(config, flags_override_the_environment, .init = clear_env)
{
    setenv("SLUICE_HTTP_PORT", "9000", 1);
    setenv("SLUICE_AUTH", "off", 1);
    sluice_config c;
    char *argv[] = {"sluice", "--http-port", "9001", "--max-batch=5"};
    cr_assert_eq(config_load(&c, 4, argv, 1), 0);
    cr_assert_eq(c.http_port, 9001);
    cr_assert_eq(c.max_batch, 5);
    cr_assert_not(c.auth);
    config_dispose(&c);
    clear_env();
}

Test(config, bad_values_are_refused, .init = clear_env)
{
    sluice_config c;
    char *a1[] = {"sluice", "--http-port", "70000"};
    cr_assert_eq(config_load(&c, 3, a1, 1), -1);
    config_dispose(&c);
    char *a2[] = {"sluice", "--auth", "maybe"};
    cr_assert_eq(config_load(&c, 3, a2, 1), -1);
    config_dispose(&c);
    char *a3[] = {"sluice", "--no-such-flag", "1"};
    cr_assert_eq(config_load(&c, 3, a3, 1), -1);
    config_dispose(&c);
    setenv("SLUICE_MAX_BATCH", "0", 1);
    char *a4[] = {"sluice"};
    cr_assert_eq(config_load(&c, 1, a4, 1), -1);
    config_dispose(&c);
    clear_env();
}

Test(config, booleans_accept_the_usual_spellings)
{
    cr_assert_eq(config_parse_bool("on"), 1);
    cr_assert_eq(config_parse_bool("TRUE"), 1);
    cr_assert_eq(config_parse_bool("1"), 1);
    cr_assert_eq(config_parse_bool("off"), 0);
    cr_assert_eq(config_parse_bool("no"), 0);
    cr_assert_eq(config_parse_bool("2"), -1);
}

Test(config, the_http_timeout_defaults_to_30_s_and_stays_within_bounds, .init = clear_env)
{
    sluice_config c;
    char *argv[] = {"sluice"};
    cr_assert_eq(config_load(&c, 1, argv, 1), 0);
    cr_assert_eq(c.http_timeout_ms, 30000);
    config_dispose(&c);
    setenv("SLUICE_HTTP_TIMEOUT_MS", "1500", 1);
    cr_assert_eq(config_load(&c, 1, argv, 1), 0);
    cr_assert_eq(c.http_timeout_ms, 1500);
    config_dispose(&c);
    setenv("SLUICE_HTTP_TIMEOUT_MS", "0", 1); /* no timeout at all is not offered */
    cr_assert_eq(config_load(&c, 1, argv, 1), -1);
    config_dispose(&c);
    clear_env();
}

Test(config, the_pool_queue_and_the_catchup_cap_are_settings, .init = clear_env)
{
    sluice_config c;
    char *argv[] = {"sluice"};
    cr_assert_eq(config_load(&c, 1, argv, 1), 0);
    cr_assert_eq(c.pool_queue, 4096);
    cr_assert_eq(c.max_catchups, 64);
    config_dispose(&c);

    setenv("SLUICE_POOL_QUEUE", "7", 1);
    setenv("SLUICE_MAX_CATCHUPS", "3", 1);
    cr_assert_eq(config_load(&c, 1, argv, 1), 0);
    cr_assert_eq(c.pool_queue, 7);
    cr_assert_eq(c.max_catchups, 3);
    config_dispose(&c);

    char *flags[] = {"sluice", "--pool-queue", "9", "--max-catchups=5"};
    cr_assert_eq(config_load(&c, 4, flags, 1), 0);
    cr_assert_eq(c.pool_queue, 9);
    cr_assert_eq(c.max_catchups, 5);
    config_dispose(&c);
    clear_env();
}

Test(config, the_pool_queue_and_the_catchup_cap_refuse_zero_and_junk, .init = clear_env)
{
    sluice_config c;
    char *argv[] = {"sluice"};
    static const char *const bad[] = {"0", "-1", "1000001", "12x", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *a[] = {"sluice", "--pool-queue", (char *)bad[i]};
        cr_assert_eq(config_load(&c, 3, a, 1), -1, "--pool-queue %s", bad[i]);
        config_dispose(&c);
    }
    char *big[] = {"sluice", "--max-catchups", "100001"};
    cr_assert_eq(config_load(&c, 3, big, 1), -1);
    config_dispose(&c);
    setenv("SLUICE_MAX_CATCHUPS", "0", 1); /* no catch-up at all is not a cap */
    cr_assert_eq(config_load(&c, 1, argv, 1), -1);
    config_dispose(&c);
    clear_env();
}
