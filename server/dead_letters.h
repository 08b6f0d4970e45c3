/*
 * dead_letters.h — the dead-letter admin API: list, inspect, reprocess
 * (one or a batch, rate-limited, with a dry run), discard. Every transition is
 * appended to the row's history; a dead letter leaves the list only by being
 * reprocessed and acknowledged, or discarded. Group dead letters are entries
 * parked in their group's PEL (groups.h), so reprocessing delivers the same
 * entry, with the same event id, to that group only.
 */
#ifndef SLUICE_DEAD_LETTERS_H
#define SLUICE_DEAD_LETTERS_H

#include "status.h"

#include <jansson.h>
#include <libpq-fe.h>

/* Pool thread. SL_OK with *answer (caller owns), SL_UNAVAILABLE, SL_NOT_FOUND, or
 * SL_REFUSED (*answer is the problem: a conflict with where the letter stands). */
sl_status dead_letters_list(PGconn **conn, const char *tenant, json_t *filter, json_t **answer);
sl_status dead_letters_get(PGconn **conn, const char *tenant, const char *id, json_t **answer);
sl_status dead_letters_reprocess(PGconn **conn, const char *tenant, const char *id,
                                 json_t **answer);
sl_status dead_letters_discard(PGconn **conn, const char *tenant, const char *id, json_t **answer);
/* Selects by {stream, group, max_age_ms, ids}; dry_run answers what would be reprocessed,
 * otherwise the redrive is scheduled at max_per_second and the answer lists the ids. `req`
 * has passed its request schema (reqschema.h: REQSCHEMA_DEAD_LETTER_REPROCESS). */
sl_status dead_letters_reprocess_batch(PGconn **conn, const char *tenant, json_t *req,
                                       json_t **answer);

#endif
