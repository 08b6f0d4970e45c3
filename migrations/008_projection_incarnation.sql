-- 008_projection_incarnation: which definition a projection row is. A projection deleted
-- and defined again under the same name starts at generation 0 and position 0 like the
-- first one did, so the runner's checkpoint guard (generation, position) could not tell a
-- batch of the deleted definition from one of the new; the incarnation, new for every
-- row, can.
ALTER TABLE projections ADD COLUMN incarnation bigserial;
