/*
 * ulid.c — ULID generation (see ulid.h). Randomness from getrandom(2).
 */
#include "ulid.h"
#include "timeutil.h"

#include <pthread.h>
#include <string.h>
#include <sys/random.h>

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static pthread_mutex_t ulid_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t last_ms;      /* {ulid_lock} */
static uint8_t last_rnd[10];  /* {ulid_lock} */

void ulid_encode(uint64_t ms, const uint8_t rnd[10], char out[ULID_LEN + 1])
{
    uint8_t b[16];
    for (int i = 0; i < 6; i++) b[i] = (uint8_t)(ms >> (8 * (5 - i)));
    memcpy(b + 6, rnd, 10);
    /* 128 bits → 26 base32 digits; the first digit carries the top 3 bits. */
    for (int i = 0; i < ULID_LEN; i++) {
        int bit = 128 - 5 * (ULID_LEN - i); /* position of this digit's lowest bit from the top */
        unsigned v = 0;
        for (int k = 0; k < 5; k++) {
            int pos = bit + k;
            if (pos < 0) continue;
            v = (v << 1) | ((b[pos / 8] >> (7 - pos % 8)) & 1u);
        }
        out[i] = crockford[v & 31];
    }
    out[ULID_LEN] = '\0';
}

void ulid_new(char out[ULID_LEN + 1])
{
    uint64_t ms = (uint64_t)time_now_ms();
    uint8_t rnd[10];
    pthread_mutex_lock(&ulid_lock);
    if (ms <= last_ms) {
        ms = last_ms;
        for (int i = 9; i >= 0; i--) /* increment; overflow past 2^80 in one ms is not a concern */
            if (++last_rnd[i] != 0) break;
    } else {
        if (getrandom(last_rnd, sizeof last_rnd, 0) != (ssize_t)sizeof last_rnd)
            for (int i = 0; i < 10; i++) last_rnd[i] = (uint8_t)(ms >> i) ^ (uint8_t)i;
        last_rnd[0] &= 0x7f; /* leave room to increment within the millisecond */
        last_ms = ms;
    }
    memcpy(rnd, last_rnd, sizeof rnd);
    pthread_mutex_unlock(&ulid_lock);
    ulid_encode(ms, rnd, out);
}
