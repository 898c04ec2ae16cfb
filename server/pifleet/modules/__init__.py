"""Role modules: builds (uploads checked and versioned, compiled per .mpy ABI: ModuleService), sync (a board
brought in line with its role) and rollouts (a new version across the fleet, one board first).

Services: no litestar or aiocoap; boards are reached through devices.link.BoardLink.
"""
