/*
 * timeutil.h — wall-clock and monotonic time helpers shared by every module.
 *
 * Sluice writes timestamps as RFC 3339 UTC with milliseconds
 * ("2026-11-23T03:14:55.123Z"), as API.md's conventions require.
 */
#ifndef SLUICE_TIMEUTIL_H
#define SLUICE_TIMEUTIL_H

#include <stdbool.h>
#include <stdint.h>

#define TIME_RFC3339_LEN 25 /* "YYYY-MM-DDTHH:MM:SS.mmmZ" + NUL */

int64_t time_now_ms(void);   /* wall clock, ms since the epoch */
int64_t time_mono_ms(void);  /* monotonic clock, ms */
void time_now_rfc3339(char out[32]);
void time_format_rfc3339(int64_t ms, char out[32]);
/* Parses an RFC 3339 timestamp (any offset, optional fraction) into ms since the epoch. */
bool time_parse_rfc3339(const char *s, int64_t *ms);

#endif
