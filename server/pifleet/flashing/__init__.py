"""Flashing: flash layout, base-image catalog, provisioning bundles, USB detection, the esptool driver."""
