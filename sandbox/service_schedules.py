"""Service's schedules: creating, changing, deleting and running them, with their checks
and their scripts (a template's rendered as it is now); sandbox/schedules.py runs them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.errors import Forbidden, InputError, PolicyError
from sandbox.pipeline import Judgement
from sandbox.schedules import ScheduleRunner, trigger_for
from sandbox.store import BatchRecord, Role, ScheduleRecord, Source, Store, UserRecord
from sandbox.templates import bind, render


class ScheduleOps:
    """Mixin of ``Service`` (sandbox/service.py): the attributes below are its."""

    store: Store
    schedules: ScheduleRunner | None
    classify: Callable[[str], Judgement]
    submit: Callable[..., BatchRecord]

    def _runner(self) -> ScheduleRunner:
        if self.schedules is None:
            raise PolicyError("schedules are switched off in this server")
        return self.schedules

    def create_schedule(self, user: UserRecord, **fields: Any) -> ScheduleRecord:
        if not user.role.allows(Role.OPERATOR):
            raise Forbidden("viewers may not create schedules")
        runner = self._runner()
        values = self._schedule_values(fields, creating=True, owner=user)
        if self.store.schedules.find(user.id, values["name"]) is not None:
            raise InputError(f"you have a schedule named {values['name']!r} already")
        record = self.store.schedules.create(user_id=user.id, **values)
        return runner.added(record)

    def update_schedule(self, user: UserRecord, schedule_id: int, **fields: Any) -> ScheduleRecord:
        runner = self._runner()
        current = self.store.schedules.get(schedule_id)
        self._may_manage(user, current.user_id)
        values = self._schedule_values(fields, creating=False, current=current, owner=user)
        record = self.store.schedules.update(schedule_id, **values)
        trigger_changed = "cron" in values or "interval_s" in values
        return runner.changed(record, trigger_changed)

    def delete_schedule(self, user: UserRecord, schedule_id: int) -> None:
        current = self.store.schedules.get(schedule_id)
        self._may_manage(user, current.user_id)
        self._runner().removed(schedule_id)
        self.store.schedules.delete(schedule_id)

    def run_schedule(self, user: UserRecord, schedule_id: int) -> BatchRecord:
        """Run a schedule now, outside its trigger (its next run stays as it was): a batch
        of its owner's, with source ``schedule``, as a scheduled run would make it."""
        s = self.store.schedules.get(schedule_id)
        self._may_manage(user, s.user_id)
        owner = self.store.accounts.get_user(s.user_id)
        if owner.disabled:
            raise PolicyError(f"the schedule's owner {owner.name} is disabled")
        script, params = self.schedule_script(s)
        return self.submit(
            owner,
            script=script,
            params=params,
            workspace=self.store.workspaces.get(s.workspace_id).name,
            priority=max(1, min(10, s.priority or 5)),
            timeout_s=s.timeout_s,
            retries=s.retries,
            source=Source.SCHEDULE,
            schedule_id=s.id,
        )

    def template_script(self, name: Any, values: Any) -> tuple[str, dict[str, str]]:
        """A template's script rendered (placeholders become ``"${BF_PARAM_x}"``) and the
        environment of its values, as ``POST /batches {"template", "params"}`` makes them;
        InputError names what is missing or wrong."""
        if not isinstance(name, str) or not name:
            raise InputError("`template` is a template's name")
        t = self.store.templates.find(name)
        if t is None:
            raise InputError(f"`template`: no template {name!r}")
        definitions = list(t.params)
        return render(t.script, definitions), bind(definitions, values)

    def schedule_script(self, s: ScheduleRecord) -> tuple[str, dict[str, str] | None]:
        """What a run of the schedule submits: its script, or its template as it is now."""
        if s.template is None:
            return s.script, None
        return self.template_script(s.template, dict(s.params or {}))

    def _may_manage(self, user: UserRecord, owner_id: int) -> None:
        if user.role is Role.ADMIN:
            return
        if not user.role.allows(Role.OPERATOR) or user.id != owner_id:
            raise Forbidden("operators manage only their own schedules")

    def _schedule_values(
        self,
        fields: dict[str, Any],
        *,
        creating: bool,
        current: ScheduleRecord | None = None,
        owner: UserRecord | None = None,
    ) -> dict[str, Any]:
        allowed = {
            "name",
            "script",
            "template",
            "params",
            "workspace",
            "cron",
            "interval_s",
            "priority",
            "timeout_s",
            "retries",
            "paused",
        }
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise InputError(f"unknown field(s) {', '.join(unknown)}")
        values: dict[str, Any] = {}
        if creating or "name" in fields:
            name = fields.get("name")
            if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
                raise InputError("a schedule needs a `name` of 1 to 100 characters")
            values["name"] = name.strip()
        if "template" in fields and "script" in fields:
            raise InputError("give `template` (with `params`) or `script`, not both")
        uses_template = "template" in fields or (
            not creating and "script" not in fields and current is not None and current.template
        )
        if "params" in fields and not uses_template:
            raise InputError("`params` goes with `template`")
        if uses_template and ("template" in fields or "params" in fields):
            name = fields.get("template", current.template if current else None)
            given = fields.get("params", {} if "template" in fields or not current else None)
            if given is None:
                given = dict(current.params or {}) if current else {}
            rendered, _env = self.template_script(name, given)
            self.classify(rendered)  # the same limits and checks as a submission
            values.update(script="", template=name, params=dict(given))
        elif creating or "script" in fields:
            script = fields.get("script")
            if not isinstance(script, str):
                raise InputError("`script` (text) or `template` is required")
            self.classify(script)  # the same limits and checks as a submission
            values.update(script=script, template=None, params=None)
        if creating or "workspace" in fields:
            ws = fields.get("workspace", "default")
            if not isinstance(ws, str):
                raise InputError("`workspace` is a name")
            made_by = owner.id if owner is not None else None
            values["workspace_id"] = self.store.workspaces.get_or_create(
                ws, owner_user_id=made_by
            ).id
        if creating or "cron" in fields or "interval_s" in fields:
            cron = fields.get(
                "cron", None if creating or "interval_s" in fields else current and current.cron
            )
            interval = fields.get(
                "interval_s",
                None if creating or "cron" in fields else current and current.interval_s,
            )
            trigger_for(cron, interval)  # raises InputError with what is wrong
            values["cron"], values["interval_s"] = cron, interval
        for key, lo, hi in (("priority", 1, 10), ("retries", 0, 10)):
            if key in fields:
                v = fields[key]
                if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                    raise InputError(f"`{key}` must be from {lo} to {hi}")
                values[key] = v
        if "timeout_s" in fields:
            t = fields["timeout_s"]
            if t is not None and (
                isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t <= 7 * 86400
            ):
                raise InputError("`timeout_s` is a number of seconds, more than 0, at most a week")
            values["timeout_s"] = t
        if "paused" in fields:
            if not isinstance(fields["paused"], bool):
                raise InputError("`paused` is true or false")
            values["paused"] = fields["paused"]
        elif creating:
            values.setdefault("priority", 5)
        return values
