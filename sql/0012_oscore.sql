-- pifleet 0012: OSCORE. Each paired board has a short sender id (its kid), unique in the fleet; the keys derive
-- from its secret. A revoked board keeps its row (history) but loses its secret: it is unpaired until flashed or
-- adopted again, which gives it a fresh secret.

create sequence oscore_ids;
alter table device_secrets add column oscore_id bytea unique;
alter table devices add column revoked_at timestamptz;
