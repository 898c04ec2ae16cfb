"""Gateway: the CoAP adapter (aiocoap). Thin resources the boards call, and the client that commands boards.

Translates between CoAP and the fleet/jobs services; holds no fleet logic of its own.
"""
