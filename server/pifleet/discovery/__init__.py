"""Discovery: the master advertises itself by mDNS/DNS-SD (python-zeroconf) so boards find it on the LAN."""
