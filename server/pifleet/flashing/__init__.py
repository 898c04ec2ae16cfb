"""Flashing: base-image catalog, USB detection, the esptool driver, flash & pair (the bundle: pifleet.boardfs)."""
