"""Devices: the registry (registrations, heartbeats, capabilities, online state), pairing (one identity scheme,
one secret maker, revoke), adoption, command-parameter checks, the device service the web calls, and `link`:
the BoardLink/BoardKeys Protocols through which services reach boards.

Services: no litestar, aiocoap or zeroconf imports. They talk to boards through a BoardLink that the gateway
implements. Imports nothing of modules/, roles/, jobs/ or flashing/.
"""
