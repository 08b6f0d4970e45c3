-- 012_group_consumers: what the consumer API needs of a group beside its PEL.
--   strategy      how the retry delay grows with the attempt (exponential, linear, fixed)
--   filter        the group's filter ({types, where}), applied to consumer-API deliveries;
--                 NULL = every event of the stream
--   acked_floor   the position at or below which every message of the group was
--                 acknowledged or dead-lettered, kept by the sweeper; a group Redis lost
--                 is recreated from here (NULL: not measured yet, recreated at its start)
ALTER TABLE consumer_groups
    ADD COLUMN strategy text NOT NULL DEFAULT 'exponential'
        CHECK (strategy IN ('exponential', 'linear', 'fixed')),
    ADD COLUMN filter jsonb,
    ADD COLUMN acked_floor bigint;
