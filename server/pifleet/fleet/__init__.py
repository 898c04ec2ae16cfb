"""Fleet: the device registry (registration, online state, capabilities) and command validation.

Services: no litestar, aiocoap or zeroconf imports. They talk to boards through a BoardLink that the gateway
implements.
"""
