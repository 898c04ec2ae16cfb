"""Roles as data: which capability modules a board runs, their configuration, and the role's own jobs.

Layer: service. Applying a role checks every module's configuration against the CONFIG it declares. Each of
the role's jobs becomes a job targeting the role, named ROLE.JOB. Jobs the role no longer lists are deleted.
Every board with the role is then synced (modules/sync.py). Assigning a role to boards records it, with their
own configuration on top, and syncs them. The presets of roles/presets.py are stored as roles the first
time the master starts; people may redefine them.
"""

from __future__ import annotations

import asyncpg
import msgspec

from ..devices.params import check_config, check_params
from ..errors import ConflictError, InvalidError, NotFoundError
from ..events import EventHub
from ..jobs import results
from ..jobs.service import JobService
from ..model import DeviceRead, JobSpec, RoleAssign, RoleRead, RoleSpec
from ..modules.builds import ModuleService
from ..modules.sync import Syncer
from ..storage import devices as dq
from ..storage import modules as mq
from ..storage import roles as rq
from .presets import ROLES


def _job_spec(role: str, index: int, template: dict) -> JobSpec:
    """A role's job template as a job targeting the role; InvalidError naming jobs[i].FIELD."""
    where = f"jobs[{index}]"
    if "target" in template:
        raise InvalidError("a role's job targets the role; leave out target", field=f"{where}.target")
    name = template.get("name")
    if not isinstance(name, str):
        raise InvalidError("a role's job needs a name", field=f"{where}.name")
    try:
        return msgspec.convert({**template, "name": f"{role}.{name}", "target": {"role": role}}, JobSpec)
    except msgspec.ValidationError as exc:
        message = str(exc)
        path = message.rsplit("at `$", 1)[1].rstrip("`") if "at `$" in message else ""
        raise InvalidError(message, field=where + path) from None


class RoleService:
    def __init__(
        self, pool: asyncpg.Pool, hub: EventHub, modules: ModuleService, jobs: JobService, syncer: Syncer
    ) -> None:
        self.pool = pool
        self.hub = hub
        self.modules = modules
        self.jobs = jobs
        self.syncer = syncer

    async def store_presets(self) -> None:
        for name, caps in ROLES.items():
            await rq.define_if_new(self.pool, name, "preset", caps)

    async def list(self) -> list[RoleRead]:
        return await rq.list_roles(self.pool)

    async def get(self, name: str) -> RoleRead:
        role = await rq.get_role(self.pool, name)
        if role is None:
            raise NotFoundError(f"no role {name!r}", field="role")
        return role

    async def flash_plan(self, name: str) -> tuple[dict[str, dict], dict[str, str]]:
        """What flashing writes for a role: its modules' configuration and the newest version of each."""
        role = await rq.get_role(self.pool, name)
        if role is None or not role.defined:
            known = ", ".join(r.name for r in await rq.list_roles(self.pool) if r.defined)
            raise InvalidError(f"unknown role {name!r} (known: {known})", field="role")
        versions = await self.modules.ensure(list(role.modules))
        sources = {cap: await mq.source(self.pool, module.id) or "" for cap, module in versions.items()}
        return role.modules, sources

    async def check(self, name: str, spec: RoleSpec) -> list[JobSpec]:
        versions = await self.modules.ensure(list(spec.modules))
        for cap, cfg in spec.modules.items():
            check_config(cap, versions[cap].declared.get("config"), cfg, f"modules.{cap}")
        specs = [_job_spec(name, i, template) for i, template in enumerate(spec.jobs)]
        for i, job in enumerate(specs):
            if job.action.capability not in spec.modules:
                raise InvalidError(
                    f"the role has no module {job.action.capability!r}", field=f"jobs[{i}].action.capability"
                )
            declared = versions[job.action.capability].declared
            schema = declared.get("schema") or {c: {} for c in declared.get("commands", [])}
            check_params(job.action.capability, job.action.command, schema, job.action.params, f"jobs[{i}].action")
            for k, follow in enumerate(job.follow_ups):
                if follow.target is None and follow.action.capability in spec.modules:
                    declared = versions[follow.action.capability].declared
                    check_params(
                        follow.action.capability,
                        follow.action.command,
                        declared.get("schema") or {},
                        follow.action.params,
                        f"jobs[{i}].follow_ups[{k}].action",
                        deferred=results.references(follow.action.params),
                    )
            try:
                await self.jobs.check(job, check_members=False)  # triggers, follow-ups: all before storing
            except InvalidError as exc:
                raise InvalidError(exc.detail, field=f"jobs[{i}].{exc.field}" if exc.field else f"jobs[{i}]") from None
        return specs

    async def apply(self, name: str, spec: RoleSpec) -> RoleRead:
        """Create or replace a role; its boards are synced in the background."""
        jobs = await self.check(name, spec)
        await rq.put_role(self.pool, name, spec.description, spec.modules)
        for job in jobs:
            await self.jobs.save(job, check_members=False)  # boards may still run the old modules
            await rq.mark_role_job(self.pool, job.name, name)
        keep = {job.name for job in jobs}
        for stale in await rq.role_job_names(self.pool, name):
            if stale not in keep:
                await self.jobs.delete(stale)
        device_ids = await rq.device_ids_with_role(self.pool, [name])
        self.syncer.request(device_ids)
        self.hub.publish("roles")
        self.hub.publish("jobs")
        return await self.get(name)

    async def assign(self, name: str, request: RoleAssign) -> list[DeviceRead]:
        role = await self.get(name)
        if not role.defined:
            raise ConflictError(
                f"role {name!r} is only named by a board; define it first (pifleet role apply)", field="role"
            )
        devices = []
        for i, device_name in enumerate(request.devices):
            device = await dq.get_by_name(self.pool, device_name)
            if device is None:
                raise NotFoundError(f"no device {device_name!r}", field=f"devices[{i}]")
            devices.append(device)
        if request.config is not None:
            versions = await self.modules.ensure(list(role.modules))
            for cap, cfg in request.config.items():
                if cap not in role.modules:
                    raise InvalidError(f"role {name!r} has no module {cap!r}", field=f"config.{cap}")
                check_config(cap, versions[cap].declared.get("config"), {**role.modules[cap], **cfg}, f"config.{cap}")
        await rq.assign(self.pool, [d.id for d in devices], name, request.config)
        self.syncer.request([d.id for d in devices])
        self.hub.publish("devices")
        self.hub.publish("roles")
        return [d for d in [await dq.get_by_id(self.pool, d.id) for d in devices] if d is not None]

    async def delete(self, name: str) -> None:
        if not await rq.delete_role(self.pool, name):
            raise NotFoundError(f"no role {name!r}", field="role")
        self.hub.publish("roles")
        self.hub.publish("jobs")
