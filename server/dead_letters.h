/*
 * dead_letters.h — the dead-letter admin API: list, inspect, reprocess
 * (one or a batch, rate-limited, with a dry run), discard. Every transition is
 * appended to the row's history; a dead letter leaves the list only by being
 * reprocessed and acknowledged, or discarded.
 *
 * Where a letter failed is its source, `<kind>:<name>` in the API:
 *   - group:<name> — entries parked in their group's PEL (groups.h); reprocessing
 *     delivers the same entry, with the same event id, to that group only, and the
 *     letter is resolved once a worker acknowledges it (the groups sweeper).
 *   - projection:<name> — events a reducer refused (projections.h); reprocessing
 *     reapplies the event to the key's state as it is now, in the same transaction
 *     that resolves the letter, or, refused again, keeps it open with the new error.
 *   - webhook:<name> — listed and discarded; not reprocessed yet.
 * The table keeps a group's letter as source 'group' with group_name (the groups
 * sweeper's unique index and queries rely on it); this module shows and filters it
 * as group:<name>.
 *
 * Reprocessing never delivers twice: a letter moves only out of `open`, with one
 * UPDATE (or a row lock) that a concurrent request loses. A batch claims the letters it
 * selects (redrive_until) until its redrive ends, so a re-sent request finds none of
 * them, not even one that was reprocessed and failed again meanwhile; and the redrive
 * reprocesses a letter only while its history is as long as when it was selected, so a
 * claim that lapsed (a redrive stalled past redrive_until) still delivers once.
 */
#ifndef SLUICE_DEAD_LETTERS_H
#define SLUICE_DEAD_LETTERS_H

#include "status.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>

/* Most letters one batch selects (its `limit`, and the default). */
#define DEAD_LETTERS_BATCH_MAX 10000

/* True when `source` is a source filter: a kind (group, projection, webhook: every letter
 * of that kind) or `<kind>:<name>` (exactly that one). Any thread. */
bool dead_letters_source_valid(const char *source);

/* Pool thread. SL_OK with *answer (caller owns), SL_UNAVAILABLE, SL_NOT_FOUND, or
 * SL_REFUSED (*answer is the problem: a conflict with where the letter stands).
 * dead_letters_list's `filter` holds the query's strings (stream, group, type, source,
 * event_id, status, older_than_ms, after, limit), already checked by the handler
 * (source with dead_letters_source_valid). */
sl_status dead_letters_list(PGconn **conn, const char *tenant, json_t *filter, json_t **answer);
sl_status dead_letters_get(PGconn **conn, const char *tenant, const char *id, json_t **answer);
/* A letter that is no longer open answers as it stands (reprocessing twice delivers once);
 * a discarded one, a webhook's, one whose group is gone, one whose projection is gone or
 * has not reached the event yet: SL_REFUSED (409). A projection's letter refused again
 * answers SL_OK, open, with the new error. */
sl_status dead_letters_reprocess(PGconn **conn, const char *tenant, const char *id,
                                 json_t **answer);
sl_status dead_letters_discard(PGconn **conn, const char *tenant, const char *id, json_t **answer);
/* Selects open letters Sluice can reprocess (groups' and projections') by {stream, group,
 * source, max_age_ms, ids, event_ids}, oldest first, at most `limit` (has_more says a limit
 * stopped it); dry_run answers what would be reprocessed, otherwise the redrive is
 * scheduled at max_per_second and the answer lists the ids. `req` has passed its request
 * schema (reqschema.h: REQSCHEMA_DEAD_LETTER_REPROCESS). */
sl_status dead_letters_reprocess_batch(PGconn **conn, const char *tenant, json_t *req,
                                       json_t **answer);

#endif
