/*
 * bench.c — validations per second of Sluice's validator (server/schema/) on
 * one core, over the schemas and instances in cases.json; bench.js measures
 * ajv on the same file. bench/validate/run.sh builds and runs both (issue 3:
 * the target is Sluice >= 2x ajv).
 *
 * Each validation is what the publish path does per event: validate `data`
 * against its compiled schema with an error array (every violation listed,
 * paths under "/data"). The mix is every instance of every case, round-robin.
 *
 * Usage: bench CASES.json [SECONDS [all|valid|invalid]]
 * The third argument keeps only the valid or only the invalid instances.
 * Prints the validity of each instance (to compare with ajv), then
 * "sluice: N validations/s of CPU time (...)": the rate per CPU-second, which
 * other work on a shared machine disturbs less than the wall-clock rate (also
 * printed).
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "schema/validator.h"

typedef struct item {
    schema *s;
    json_t *inst;
} item;

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CASES.json [SECONDS]\n", argv[0]);
        return 2;
    }
    double seconds = argc > 2 ? atof(argv[2]) : 3.0;
    const char *only = argc > 3 ? argv[3] : "all";
    json_error_t jerr;
    json_t *doc = json_load_file(argv[1], 0, &jerr);
    if (!doc) {
        fprintf(stderr, "%s: %s\n", argv[1], jerr.text);
        return 1;
    }
    json_t *cases = json_object_get(doc, "cases");
    size_t nitems = 0, ncases = json_array_size(cases);
    schema **schemas = calloc(ncases, sizeof *schemas);
    item *mix = NULL;
    size_t ci;
    json_t *c;
    json_array_foreach(cases, ci, c)
    {
        json_t *errors = json_array();
        schema_status st;
        schemas[ci] = schema_compile(json_object_get(c, "schema"), &st, errors);
        if (!schemas[ci]) {
            char *e = json_dumps(errors, 0);
            fprintf(stderr, "%s: schema does not compile: %s\n",
                    json_string_value(json_object_get(c, "name")), e);
            return 1;
        }
        json_decref(errors);
        size_t ii;
        json_t *inst;
        json_array_foreach(json_object_get(c, "instances"), ii, inst)
        {
            mix = realloc(mix, (nitems + 1) * sizeof *mix);
            mix[nitems++] = (item){schemas[ci], inst};
        }
    }

    json_t *errors = json_array();
    printf("validity:");
    size_t kept = 0;
    for (size_t i = 0; i < nitems; i++) {
        bool valid = schema_validate(mix[i].s, mix[i].inst, "/data", -1, NULL);
        printf(" %d", valid);
        if (strcmp(only, "all") == 0 || (strcmp(only, "valid") == 0) == valid) mix[kept++] = mix[i];
    }
    printf("\n");
    nitems = kept;

    /* warm-up, then the measured run */
    double t0 = now(), end = t0 + 0.3;
    while (now() < end)
        for (size_t i = 0; i < nitems; i++) {
            json_array_clear(errors);
            (void)schema_validate(mix[i].s, mix[i].inst, "/data", -1, errors);
        }
    unsigned long long count = 0;
    size_t reported = 0;
    double cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    t0 = now();
    end = t0 + seconds;
    double t;
    do {
        for (int round = 0; round < 64; round++)
            for (size_t i = 0; i < nitems; i++) {
                json_array_clear(errors);
                (void)schema_validate(mix[i].s, mix[i].inst, "/data", -1, errors);
                reported += json_array_size(errors);
            }
        count += 64 * nitems;
    } while ((t = now()) < end);
    double cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    printf("sluice: %.0f validations/s of CPU time (%.0f/s of wall time; %zu instances, %llu "
           "validations in %.2f s, %.2f s CPU, %zu violations listed)\n",
           (double)count / cpu, (double)count / (t - t0), nitems, count, t - t0, cpu, reported);

    json_decref(errors);
    for (size_t i = 0; i < ncases; i++)
        schema_free(schemas[i]);
    free(schemas);
    free(mix);
    json_decref(doc);
    return 0;
}
