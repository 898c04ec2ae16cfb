"""Roles: RoleService (roles as data: modules, their configuration, the role's jobs; assignment) and the presets
stored as roles at the first start.

Services: no litestar or aiocoap.
"""
