/*
 * ulid.h — ULIDs for event ids Sluice assigns (https://github.com/ulid/spec):
 * 48 bits of milliseconds + 80 random bits, Crockford base32, 26 characters.
 * Monotonic within one process: two ids made in the same millisecond sort in
 * the order they were made.
 */
#ifndef SLUICE_ULID_H
#define SLUICE_ULID_H

#include <stdint.h>

#define ULID_LEN 26

/* Writes a new ULID and a NUL into out[27]. Any thread. */
void ulid_new(char out[ULID_LEN + 1]);
/* The same from a given time and randomness (for tests). */
void ulid_encode(uint64_t ms, const uint8_t rnd[10], char out[ULID_LEN + 1]);

#endif
