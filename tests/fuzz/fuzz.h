/*
 * tests/fuzz/fuzz.h — helpers shared by the libFuzzer targets (issue 8, "Hostile input").
 *
 * Each target turns raw bytes into what a server entry point receives and checks, beyond
 * "no crash, no leak" (ASan, UBSan, LeakSanitizer), the contracts the headers promise:
 * answers are well-formed JSON, error lists say what failed, filters hold only what the
 * grammar allows. A broken promise calls fuzz_fail(), which aborts so libFuzzer keeps the
 * input as a crash-<sha1> file.
 */
#ifndef SLUICE_FUZZ_H
#define SLUICE_FUZZ_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The JSON decoding flags of the HTTP handlers (handlers/common.c). */
#define FUZZ_BODY_FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY)

/* A broken contract: say which, then abort (libFuzzer saves the input). */
#define fuzz_fail(...)                                                                         \
    do {                                                                                       \
        fprintf(stderr, "fuzz: %s:%d: ", __FILE__, __LINE__);                                  \
        fprintf(stderr, __VA_ARGS__);                                                          \
        fputc('\n', stderr);                                                                   \
        abort();                                                                               \
    } while (0)

#define fuzz_check(cond, ...)                                                                  \
    do {                                                                                       \
        if (!(cond)) fuzz_fail("check failed: " #cond ": " __VA_ARGS__);                       \
    } while (0)

/* `data` as a NUL-terminated string (caller frees). Bytes after an embedded NUL are cut,
 * as they would be by any C-string consumer. */
static inline char *fuzz_cstr(const unsigned char *data, size_t len)
{
    char *s = malloc(len + 1);
    if (!s) abort();
    memcpy(s, data, len);
    s[len] = '\0';
    return s;
}

/* True when `s` is valid UTF-8 (what jansson accepts in a string). */
static inline bool fuzz_utf8_valid(const char *s, size_t len)
{
    json_t *j = json_stringn(s, len);
    bool ok = j != NULL;
    json_decref(j);
    return ok;
}

/* Checks that `v` serialises and parses back equal: every answer Sluice sends goes out
 * through json_dumps, so a value that cannot round-trip would be a broken answer. */
static inline void fuzz_check_roundtrip(const json_t *v, const char *what)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) fuzz_fail("%s: json_dumps failed", what);
    json_error_t err;
    json_t *back = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!back) fuzz_fail("%s: does not parse back: %s: %s", what, err.text, text);
    if (!json_equal(back, v)) fuzz_fail("%s: parses back different: %s", what, text);
    json_decref(back);
    free(text);
}

/* Checks one entry of a problem's or a validator's `errors` list. */
static inline void fuzz_check_error_entry(const json_t *e, const char *what)
{
    if (!json_is_object(e)) fuzz_fail("%s: an errors entry is not an object", what);
    const json_t *path = json_object_get(e, "path");
    if (!json_is_string(path)) fuzz_fail("%s: an errors entry has no string path", what);
    const char *p = json_string_value(path);
    if (*p && *p != '/') fuzz_fail("%s: path '%s' is not a JSON Pointer", what, p);
    if (!json_is_string(json_object_get(e, "message")))
        fuzz_fail("%s: an errors entry has no message", what);
}

#endif
