-- pifleet 0008: the catalog also holds the virtual ESP32's image (pifleet.sim.firmware), for the demo's boards.

alter table firmware drop constraint firmware_source_check;
alter table firmware add constraint firmware_source_check check (source in ('user', 'official', 'virtual'));
