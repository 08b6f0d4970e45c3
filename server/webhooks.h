/*
 * webhooks.h — the webhook registry: a tenant's push endpoints, kept in
 * PostgreSQL (migrations/014_webhooks.sql), and their status.
 *
 * The leader delivers (webhook_delivery.h); this module is what the API does to
 * a webhook: create it (the URL's host checked by destinations.h, a new
 * Standard Webhooks secret shown once), list and show it with its status
 * (position delivered, lag, counts, last failure, next attempt), pause and
 * resume it, rotate its secret (the previous one still signs for 24 hours),
 * delete it, and queue the reprocess of one of its dead letters.
 */
#ifndef SLUICE_WEBHOOKS_H
#define SLUICE_WEBHOOKS_H

#include "config.h"
#include "status.h"

#include <jansson.h>
#include <libpq-fe.h>

/* Start-up: the configuration every call uses. */
void webhooks_init(const sluice_config *cfg);

/* Pool thread. `req` has passed its request schema (REQSCHEMA_WEBHOOK_CREATE). SL_OK with
 * *answer (the webhook and its secret), SL_CONFLICT (the name exists), SL_UNAVAILABLE, or
 * SL_REFUSED with the problem (forbidden_destination, invalid_filter, invalid_request). */
sl_status webhooks_create(PGconn **conn, const char *tenant, json_t *req, json_t **answer);
sl_status webhooks_list(PGconn **conn, const char *tenant, json_t **answer);
sl_status webhooks_get(PGconn **conn, const char *tenant, const char *name, json_t **answer);
sl_status webhooks_delete(PGconn **conn, const char *tenant, const char *name);
/* Pauses (paused true) or resumes a webhook; *answer is the webhook. */
sl_status webhooks_pause(PGconn **conn, const char *tenant, const char *name, bool paused,
                         json_t **answer);
/* A new secret (*answer {"name","secret"}); the previous one keeps signing for 24 hours. */
sl_status webhooks_rotate_secret(PGconn **conn, const char *tenant, const char *name,
                                 json_t **answer);

/* Queues dead letter `dead_letter_id` (the event at `position`) for another delivery by
 * webhook `name`: the delivery resolves the letter, or dead-letters it again. SL_OK,
 * SL_NOT_FOUND (no such webhook), SL_UNAVAILABLE. */
sl_status webhooks_redeliver(PGconn **conn, const char *tenant, const char *name,
                             long long position, const char *dead_letter_id);

#endif
