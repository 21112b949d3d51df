"""Due dates and the late penalty, declared in the rubric and applied to the grades exported.

    late:
      due: 2026-12-14T23:59:00+01:00      # ISO 8601, with its UTC offset
      grace_minutes: 15                    # not late within this (default 0)
      time_zone: Europe/Berlin             # the LMS's (IANA name): reads its dates with
                                           # summer time; default: the due date's offset
      penalty: {percent: 10, per: day, cap: 50}   # of the points earned, per started hour
                                           # or day after due + grace, at most `cap` percent;
                                           # `penalty: none` (or no penalty key): late is
                                           # shown, never charged
      extensions:                          # per student: the LMS id or the batch's name
        "123456": 2026-12-16T23:59:00+01:00    # their own due date
        grantgus: waived                       # late, not charged

When a submission was handed in comes from the LMS: Moodle's grading worksheet given as
the roster (`Last modified (submission)`, in Moodle's date form and the due date's time
zone). Canvas's download marks a late submission `_LATE` but does not say when it came:
such a submission is charged one period (the least a late submission costs), and an
extension sets it otherwise. A plain folder carries no time, so nothing in it is late.
This is what nbgrader's late-submission plugin (points off per hour late) and Gradescope's
late policy (a percent per hour or day, capped) give, expressed as one rule.
"""
from __future__ import annotations

import datetime
import math
import re
from dataclasses import dataclass, field

from ..errors import RubricError

PERIODS = {"hour": datetime.timedelta(hours=1), "day": datetime.timedelta(days=1)}
WAIVED = "waived"
_MOODLE_DATE = re.compile(r"(?:[A-Za-z]+, )?(\d{1,2}) ([A-Za-z]+) (\d{4}), (\d{1,2}):(\d{2}) ?([AaPp][Mm])")
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december"]


@dataclass(frozen=True)
class Policy:
    due: datetime.datetime
    grace: datetime.timedelta = datetime.timedelta(0)
    percent: float = 0.0
    """charged per started period after due + grace (0: late is shown, never charged)"""
    per: str = "day"
    cap: float = 100.0
    extensions: dict = field(default_factory=dict)
    """student key -> an aware datetime (their due date) or WAIVED"""
    time_zone: str = ""
    """the IANA zone the LMS writes its dates in ("": the due date's fixed offset)"""

    @property
    def zone(self):
        if self.time_zone:
            import zoneinfo

            return zoneinfo.ZoneInfo(self.time_zone)
        return self.due.tzinfo

    def to_dict(self) -> dict:
        return {"due": self.due.isoformat(), "grace_minutes": self.grace.total_seconds() / 60,
                "percent": self.percent, "per": self.per, "cap": self.cap,
                "extensions": {k: v if v == WAIVED else v.isoformat() for k, v in self.extensions.items()},
                "time_zone": self.time_zone}

    @classmethod
    def from_dict(cls, data: dict) -> "Policy":
        return cls(datetime.datetime.fromisoformat(data["due"]),
                   datetime.timedelta(minutes=data["grace_minutes"]), data["percent"], data["per"],
                   data["cap"], {k: v if v == WAIVED else datetime.datetime.fromisoformat(v)
                                 for k, v in data["extensions"].items()}, data.get("time_zone", ""))


@dataclass(frozen=True)
class Late:
    """One submission against the policy."""

    late: bool
    percent: float = 0.0
    """the penalty, percent of the points earned"""
    reason: str = ""
    """one line for feedback and exports ("" when on time)"""


ON_TIME = Late(False)


def parse(raw, source: str) -> Policy | None:
    """The rubric's `late` section, validated (None when absent)."""
    if raw is None:
        return None
    where = f"{source}: late"
    if not isinstance(raw, dict):
        raise RubricError(f"{where}: expected a mapping with due (and grace_minutes, penalty, "
                          f"extensions), found {raw!r}.")
    unknown = sorted(set(raw) - {"due", "grace_minutes", "penalty", "extensions", "time_zone"})
    if unknown:
        raise RubricError(f"{where}: unknown key {unknown[0]!r}; expected due, grace_minutes, "
                          "penalty, extensions, time_zone.")
    if "due" not in raw:
        raise RubricError(f"{where}: missing key 'due' (the due date, e.g. 2026-12-14T23:59:00+01:00).")
    due = _when(raw["due"], f"{where}: due")
    grace = raw.get("grace_minutes", 0)
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace < 10**7:
        raise RubricError(f"{where}: grace_minutes must be a number of minutes >= 0, found {grace!r}.")
    percent, per, cap = 0.0, "day", 100.0
    penalty = raw.get("penalty", "none")
    if penalty != "none":
        if not isinstance(penalty, dict) or set(penalty) - {"percent", "per", "cap"} or "percent" not in penalty:
            raise RubricError(f"{where}: penalty must be none or a mapping with percent, per (hour or "
                              f"day) and cap, found {penalty!r}.")
        percent, per, cap = penalty["percent"], penalty.get("per", "day"), penalty.get("cap", 100)
        for name, value in (("percent", percent), ("cap", cap)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:  # NaN fails too
                raise RubricError(f"{where}: penalty {name} must be a percent in 0..100, found {value!r}.")
        if per not in PERIODS:
            raise RubricError(f"{where}: penalty per must be hour or day, found {per!r}.")
    zone = raw.get("time_zone", "")
    if zone:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            raise RubricError(f"{where}: time_zone must be an IANA zone such as Europe/Berlin, "
                              f"found {zone!r}.") from None
    given = raw.get("extensions") or {}
    if not isinstance(given, dict):
        raise RubricError(f"{where}: extensions must map a student (LMS id or name) to a due date "
                          f"or {WAIVED!r}, found {given!r}.")
    extensions = {}
    for key, value in given.items():
        extensions[str(key)] = WAIVED if value == WAIVED else _when(value, f"{where}: extensions: {key}")
    return Policy(due, datetime.timedelta(minutes=grace), float(percent), per, float(cap), extensions,
                  str(zone))


def _when(value, where: str) -> datetime.datetime:
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            value = None
    if not isinstance(value, datetime.datetime) or value.tzinfo is None:
        raise RubricError(f"{where}: expected a date and time with its UTC offset, e.g. "
                          f"2026-12-14T23:59:00+01:00 (or {WAIVED!r} for an extension), found {value!r}.")
    return value


def moodle_time(text: str, zone) -> datetime.datetime | None:
    """A date as Moodle's worksheet writes it ("Monday, 7 December 2026, 4:05 PM"), in `zone`
    (the due date's: the worksheet gives none); None for "-" or anything else."""
    found = _MOODLE_DATE.fullmatch(text.strip())
    if not found or found[2].lower() not in _MONTHS:
        return None
    day, month, year, hour, minute, half = found.groups()
    hour = int(hour) % 12 + (12 if half.lower() == "pm" else 0)
    try:
        return datetime.datetime(int(year), _MONTHS.index(month.lower()) + 1, int(day), hour,
                                 int(minute), tzinfo=zone)
    except ValueError:
        return None


def judge(policy: Policy | None, keys: list[str], submitted: datetime.datetime | None,
          marked_late: bool) -> Late:
    """`policy` applied to one submission known by `keys` (its LMS id, its batch name):
    handed in at `submitted` (None: unknown) and/or marked late by the LMS."""
    if policy is None:
        return ON_TIME
    extension = next((policy.extensions[k] for k in keys if k in policy.extensions), None)
    due = extension if isinstance(extension, datetime.datetime) else policy.due
    if submitted is not None:
        over = submitted - due - policy.grace
        if over <= datetime.timedelta(0):
            return ON_TIME
        periods = math.ceil(over / PERIODS[policy.per])
        what = f"submitted {_span(over + policy.grace)} after the due date"
    elif marked_late and extension in (None, WAIVED):
        periods, what = 1, "marked late by the LMS, which does not say when (one period, grace or not)"
    else:
        return ON_TIME
    if extension == WAIVED:
        return Late(True, 0.0, f"{what}; the penalty is waived")
    percent = min(policy.percent * periods, policy.cap)
    if percent == 0:
        return Late(True, 0.0, f"{what}; no penalty")
    unit = policy.per + ("s" if periods != 1 else "")
    return Late(True, percent, f"{what}: {periods} {unit} at {policy.percent:g}% each"
                + (f", capped at {policy.cap:g}%" if percent == policy.cap and policy.percent * periods > policy.cap else "")
                + f", {percent:g}% of the points earned")


def _span(delta: datetime.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{minutes} min"] * bool(minutes)
    return " ".join(parts[:2]) or "under a minute"
