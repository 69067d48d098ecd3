"""CloudWatch alarms delivered by SNS -> one draft per alarm (multi-metric alarms included).

Accepted bodies: the SNS HTTP envelope (`Type`, `Message` = the alarm as a JSON string), the
Lambda event envelope (`{"Records": [{"Sns": {...}}]}`) and the bare alarm JSON.
`SubscriptionConfirmation` is ignored and its `SubscribeURL` logged at WARNING for the
operator: it is never fetched, since the body is unauthenticated input until its signature is
checked. A Notification whose Message is not an alarm is ignored (`not_an_alarm`).

States: `ALARM` is firing, `OK` is resolved, `INSUFFICIENT_DATA` is firing at P4 (the metric
stopped reporting, which is worth a look but rarely an outage). Identity is the `AlarmArn`
(else `AlarmName`), so ALARM and OK of one alarm share an incident id.

`started_at` is the `StateChangeTime` of an `ALARM` notification: the transition into ALARM
that began the episode (an SNS redelivery repeats it; CloudWatch notifies only on a state
change, so a later one is a re-fire). For `OK` and `INSUFFICIENT_DATA` it is null: their
`StateChangeTime` is the transition out of ALARM, and the payload does not say when the
ALARM began.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from config import ServiceEntry
from intake.parsers.common import (
    Draft,
    Ignored,
    Loc,
    PayloadError,
    Registry,
    Text,
    find_by_name,
    find_service,
    first_text,
    from_iso,
    validate,
)
from intake.sanitize import TooDeep, load_json
from models import AlertState, Priority

logger = logging.getLogger(__name__)

ALARM_ARN = re.compile(r"^arn:(aws[a-z-]*):cloudwatch:([a-z]{2}(?:-[a-z]+)+-\d+):")
CONSOLES = {"aws": "aws.amazon.com", "aws-cn": "amazonaws.cn", "aws-us-gov": "amazonaws-us-gov.com"}
NAME_TOKENS = re.compile(r"[-_ ]+")
SERVICE_DIMENSIONS = {"service", "servicename"}


class SnsEnvelope(BaseModel):
    """An SNS message (HTTP body, or a Lambda record's `Sns`)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: str = Field(alias="Type", description="SubscriptionConfirmation/Notification/...")
    message_id: str | None = Field(default=None, alias="MessageId", description="Per delivery.")
    topic_arn: str | None = Field(default=None, alias="TopicArn")
    subject: str | None = Field(default=None, alias="Subject", description="Optional, <= 100.")
    message: str | None = Field(default=None, alias="Message", description="The alarm, as JSON.")
    timestamp: str | None = Field(default=None, alias="Timestamp")
    subscribe_url: str | None = Field(default=None, alias="SubscribeURL")


class LambdaRecord(BaseModel):
    """One record of a Lambda SNS event."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    sns: SnsEnvelope = Field(alias="Sns")


class LambdaEvent(BaseModel):
    """The Lambda SNS event envelope."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    records: list[LambdaRecord] = Field(alias="Records")


class Dimension(BaseModel):
    """A metric dimension; the alarm JSON uses lowercase keys, the API capitalised ones."""

    name: Text = Field(validation_alias=AliasChoices("name", "Name"))
    value: Text = Field(validation_alias=AliasChoices("value", "Value"))


class Metric(BaseModel):
    """A metric of a metric-math alarm (`MetricStat.Metric`)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    metric_name: str | None = Field(default=None, alias="MetricName")
    namespace: str | None = Field(default=None, alias="Namespace")
    dimensions: list[Dimension] = Field(default_factory=list, alias="Dimensions")


class MetricStat(BaseModel):
    """`Trigger.Metrics[].MetricStat`: a metric and how it is aggregated."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    metric: Metric | None = Field(default=None, alias="Metric")


class MetricQuery(BaseModel):
    """One entry of `Trigger.Metrics` (metric-math alarms): an expression or a metric."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str | None = Field(default=None, alias="Id")
    expression: str | None = Field(default=None, alias="Expression")
    metric_stat: MetricStat | None = Field(default=None, alias="MetricStat")


class Trigger(BaseModel):
    """What the alarm watches."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    metric_name: str | None = Field(default=None, alias="MetricName")
    namespace: str | None = Field(default=None, alias="Namespace")
    dimensions: list[Dimension] = Field(default_factory=list, alias="Dimensions")
    metrics: list[MetricQuery] = Field(default_factory=list, alias="Metrics")


class CloudWatchAlarm(BaseModel):
    """The alarm state change (the envelope's `Message`, decoded)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    alarm_name: Text = Field(alias="AlarmName", min_length=1)
    alarm_description: str | None = Field(default=None, alias="AlarmDescription")
    account_id: Text | None = Field(default=None, alias="AWSAccountId")
    new_state: str = Field(alias="NewStateValue", description="ALARM, OK or INSUFFICIENT_DATA.")
    old_state: str | None = Field(default=None, alias="OldStateValue")
    reason: str | None = Field(default=None, alias="NewStateReason")
    state_change_time: str | None = Field(
        default=None, alias="StateChangeTime", description="`2021-06-23T08:41:06.622+0000`."
    )
    region: str | None = Field(default=None, alias="Region", description="A display name.")
    alarm_arn: str | None = Field(default=None, alias="AlarmArn", description="Holds the region.")
    trigger: Trigger | None = Field(default=None, alias="Trigger")


def parse(body: object, registry: Registry) -> list[Draft | Ignored]:
    """Route by envelope: Lambda records, an SNS message, or a bare alarm."""
    if isinstance(body, dict) and "Records" in body:
        event = validate(LambdaEvent, body)
        raws = body["Records"]
        return [
            _envelope(r.sns, raws[i]["Sns"], registry, at=("Records", i, "Sns"))
            for i, r in enumerate(event.records)
        ]
    if isinstance(body, dict) and "AlarmName" in body and "Type" not in body:
        return [_alarm(validate(CloudWatchAlarm, body), body, registry, at=())]
    return [_envelope(validate(SnsEnvelope, body), body, registry, at=())]


def _envelope(
    envelope: SnsEnvelope, raw: object, registry: Registry, *, at: Loc
) -> Draft | Ignored:
    """`at`: where the envelope is in the body."""
    key = f"cloudwatch:{envelope.message_id or 'unknown'}"
    kind = envelope.type.strip()
    if kind == "SubscriptionConfirmation":
        logger.warning(
            "SNS subscription confirmation for topic %s: to receive alarms, confirm it by "
            "opening this SubscribeURL (it is never fetched automatically): %s",
            envelope.topic_arn,
            envelope.subscribe_url,
        )
        return Ignored(key, "subscription_confirmation", key_loc=(*at, "MessageId"))
    if kind == "UnsubscribeConfirmation":
        logger.warning("SNS unsubscribe confirmation for topic %s", envelope.topic_arn)
        return Ignored(key, "unsubscribe_confirmation", key_loc=(*at, "MessageId"))
    message = (*at, "Message")
    alarm = _decoded_alarm(envelope.message, at=message) if kind == "Notification" else None
    if alarm is None:
        logger.info("SNS %s %s does not carry a CloudWatch alarm; ignored", kind, key)
        return Ignored(key, "not_an_alarm", key_loc=(*at, "MessageId"))
    return _alarm(validate(CloudWatchAlarm, alarm, loc=message), raw, registry, at=message)


def _decoded_alarm(message: str | None, *, at: Loc) -> dict[str, object] | None:
    """The alarm JSON the message carries, else None; nested too deep is a PayloadError."""
    try:
        decoded = load_json(message or "")
    except TooDeep as exc:
        raise PayloadError.at(at, str(exc), "json_too_deep") from None
    except ValueError:
        return None
    is_alarm = isinstance(decoded, dict) and {"AlarmName", "NewStateValue"} <= set(decoded)
    return decoded if is_alarm else None


def _all_dimensions(alarm: CloudWatchAlarm) -> list[Dimension]:
    trigger = alarm.trigger or Trigger()
    found = list(trigger.dimensions)
    for query in trigger.metrics:
        metric = query.metric_stat.metric if query.metric_stat else None
        found += metric.dimensions if metric else []
    return found


def _service(alarm: CloudWatchAlarm, registry: Registry) -> ServiceEntry | None:
    dims = [d.value for d in _all_dimensions(alarm) if d.name.lower() in SERVICE_DIMENSIONS]
    first_token = NAME_TOKENS.split(alarm.alarm_name.strip(), maxsplit=1)[0]
    return find_service(dims, registry) or find_by_name([first_token], registry)


def console_url(alarm: CloudWatchAlarm) -> str | None:
    """The alarm's console page, when the ARN names a real partition and region code."""
    found = ALARM_ARN.match(alarm.alarm_arn or "")
    if found is None or found.group(1) not in CONSOLES:
        return None
    partition, region = found.groups()
    name = quote(alarm.alarm_name, safe="")
    host = f"{region}.console.{CONSOLES[partition]}"
    return f"https://{host}/cloudwatch/home?region={region}#alarmsV2:alarm/{name}"


def _labels(alarm: CloudWatchAlarm) -> dict[str, object]:
    trigger = alarm.trigger or Trigger()
    return {
        "alarm_name": alarm.alarm_name,
        "new_state": alarm.new_state,
        "old_state": alarm.old_state,
        "account_id": alarm.account_id,
        "region": alarm.region,
        "namespace": trigger.namespace,
        "metric_name": trigger.metric_name,
        **{f"dimension.{d.name}": d.value for d in _all_dimensions(alarm)},
    }


def _alarm(alarm: CloudWatchAlarm, raw: object, registry: Registry, *, at: Loc) -> Draft:
    """`at`: where the alarm is in the body."""
    state = alarm.new_state.strip().upper()
    detail = first_text(alarm.alarm_description, alarm.reason)
    summary = f"{alarm.alarm_name} is {state}" + (f": {detail}" if detail else "")
    return Draft(
        key=f"cloudwatch:{alarm.alarm_arn or alarm.alarm_name}",
        summary=summary,
        state=AlertState.RESOLVED if state == "OK" else AlertState.FIRING,
        priority=Priority.P4 if state == "INSUFFICIENT_DATA" else Priority.P3,
        service=_service(alarm, registry),
        started_at=from_iso(alarm.state_change_time) if state == "ALARM" else None,
        labels=_labels(alarm),
        url=console_url(alarm),
        raw=raw,
        key_loc=(*at, "AlarmArn" if alarm.alarm_arn else "AlarmName"),
    )
