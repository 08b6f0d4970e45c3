/*
 * deadletters.h — the dead-letter admin API: list, inspect, reprocess
 * (one or a batch, rate-limited, with a dry run), discard. Every transition is
 * appended to the row's history; a dead letter leaves the list only by being
 * reprocessed and acknowledged, or discarded. Group dead letters are entries
 * parked in their group's PEL (groups.h), so reprocessing delivers the same
 * entry, with the same event id, to that group only.
 */
#ifndef SLUICE_DEADLETTERS_H
#define SLUICE_DEADLETTERS_H

#include <jansson.h>
#include <libpq-fe.h>

/* Pool thread. 0 with *answer (caller owns), -1 store unavailable, -2 not found,
 * -4 refused (*answer is the problem). */
int deadletters_list(PGconn **conn, const char *tenant, json_t *filter, json_t **answer);
int deadletters_get(PGconn **conn, const char *tenant, const char *id, json_t **answer);
int deadletters_reprocess(PGconn **conn, const char *tenant, const char *id, json_t **answer);
int deadletters_discard(PGconn **conn, const char *tenant, const char *id, json_t **answer);
/* Selects by {stream, group, max_age_ms, ids}; dry_run answers what would be reprocessed,
 * otherwise the redrive is scheduled at max_per_second and the answer lists the ids. */
int deadletters_reprocess_batch(PGconn **conn, const char *tenant, json_t *req, json_t **answer);

#endif
